//! The command line: clap types for every subcommand, the exit statuses, and the one place where
//! raw arguments become a validated [`RunConfig`](crate::run::RunConfig) (`config.rs`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::train::{LrSchedule, Method, OptimizerKind};

pub mod config;
pub mod interrupt;
pub mod progress;

/// How the process ends (documented in the README and docs/GATE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Success: every gate rule passed, or no gate was given.
    Ok = 0,
    /// A gate rule failed (`verify`: the files do not match the report).
    Gate = 1,
    /// Usage or input error.
    Usage = 2,
    /// `--strict` and an integrity check failed: the numbers cannot be trusted.
    Unreliable = 3,
    /// Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it); finished work is kept
    /// when the run has a report folder.
    Interrupted = 130,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Parses the command line; on a usage error prints one line (clap's first, without its usage
/// block) and returns the status to exit with. `--help` and `--version` print and return `Ok`.
pub fn parse<I, T>(args: I) -> Result<Cli, (ExitStatus, Option<String>)>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(c) => Ok(c),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err((ExitStatus::Ok, None))
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: invalid arguments").trim_end();
            if !silent() {
                eprintln!("{first} (see `gauntlet --help`)");
            }
            Err((ExitStatus::Usage, Some(first.strip_prefix("error: ").unwrap_or(first).to_string())))
        }
    }
}

static SILENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With `on`, `run` does not print its report on stdout and a failing command does not print its
/// error line (the caller reads the report folder and [`last_error`]: the Python API).
pub fn set_silent(on: bool) {
    SILENT.store(on, std::sync::atomic::Ordering::SeqCst);
}

pub(crate) fn silent() -> bool {
    SILENT.load(std::sync::atomic::Ordering::SeqCst)
}

#[derive(Parser, Debug)]
#[command(name = "gauntlet", version, about = "Adversarial-robustness testing for image classifiers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate a model's clean and robust accuracy (defaults: the shipped MNIST model and data).
    Run(RunArgs),
    /// Train a model spec on an IDX dataset and write safetensors weights plus a spec.
    Train(TrainArgs),
    /// List the available attacks.
    Attacks,
    /// Evaluate several models on the same data and rank them (leaderboard in Markdown and HTML).
    Bench(BenchArgs),
    /// Check that a report speaks for these model and dataset files (SHA-256); exit 1 if not.
    Verify(VerifyArgs),
    /// Join the report folders of a sharded run (`run --shard I/N`) into the report one run gives.
    Merge(MergeArgs),
    /// What changed between two reports: accuracies, checks, gate rules, provenance.
    Diff(DiffArgs),
    /// Describe a model: inputs, outputs, operators, parameters, opset, and whether the input
    /// gradient is available (ONNX or model spec).
    Inspect(InspectArgs),
}

/// How to read an ONNX graph: which input and output, and the input size where it is open.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GraphOpts {
    /// ONNX: the graph input that takes the images (default: the only input).
    #[arg(long, value_name = "NAME")]
    pub input_name: Option<String>,
    /// ONNX: the graph output that holds the class scores (default: the only output).
    #[arg(long, value_name = "NAME")]
    pub output_name: Option<String>,
    /// ONNX: the model's input size C,H,W (or H,W,C with --layout nhwc) where the graph leaves
    /// it open or takes flattened images.
    #[arg(long, value_name = "C,H,W")]
    pub input_shape: Option<String>,
    /// ONNX: attack the output of a final Softmax instead of the logits before it (not
    /// recommended: cross-entropy on probabilities masks gradients).
    #[arg(long)]
    pub keep_softmax: bool,
    /// ONNX: run the graph node by node through candle instead of the compiled plan (slower; the
    /// reference the plan is tested against).
    #[arg(long)]
    pub node_by_node: bool,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// An ONNX file or a model spec (.toml); not needed with --operators.
    #[arg(required_unless_present = "operators")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub graph: GraphOpts,
    /// List every ONNX operator the executor runs, with its gradient status.
    #[arg(long)]
    pub operators: bool,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model specs (.toml) or ONNX files, or `builtin:mnist-cnn` for the shipped model.
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<PathBuf>,
    #[command(flatten)]
    pub eval: EvalOpts,
    /// Where to write the leaderboard (leaderboard.md, leaderboard.html, leaderboard.json) and one
    /// report folder per model.
    #[arg(long, value_name = "DIR")]
    pub report_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// A report.json written by `gauntlet run`.
    pub report: PathBuf,
    /// The model spec (.toml) to check; default: the shipped model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The dataset to check; default: the shipped data.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The earlier report.json.
    pub old: PathBuf,
    /// The later report.json.
    pub new: PathBuf,
    /// Judge both reports by this gate (OLD as NEW's baseline) and compare rule by rule.
    #[arg(long, value_name = "FILE")]
    pub gate: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Model spec (.toml naming safetensors weights); default: the shipped MNIST CNN.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub eval: EvalOpts,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write the report to FILE: JSON, or the table if FILE ends in .txt.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write every output into DIR under fixed names: report.json, samples.jsonl, summary.md,
    /// junit.xml, report.html (and adversarial/ with --save-adversarial).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Save up to N adversarial examples per attack: PNGs (clean, adversarial, difference) and an
    /// NPZ, under DIR/adversarial (needs --report-dir).
    #[arg(long, value_name = "N", requires = "report_dir")]
    pub save_adversarial: Option<usize>,
    /// Release gate: a TOML file of rules (docs/GATE.md); exit 1 when a rule fails.
    #[arg(long, value_name = "FILE")]
    pub gate: Option<PathBuf>,
    /// An earlier report.json for the gate's regression rules.
    #[arg(long, value_name = "REPORT", requires = "gate")]
    pub baseline: Option<PathBuf>,
    /// Exit 0 even when a gate rule or (with --strict) an integrity check fails; input errors still exit 2.
    #[arg(long)]
    pub exit_zero: bool,
    /// Continue the run checkpointed in --report-dir (after a crash, `kill`, Ctrl-C or a
    /// preempted job); starts afresh when there is no checkpoint, so it is safe to pass always.
    #[arg(long, requires = "report_dir")]
    pub resume: bool,
    /// Evaluate only shard I of N: the samples [I·n/N, (I+1)·n/N); `gauntlet merge` joins the
    /// shards' report folders. A `{shard}` in --report-dir is replaced by I.
    #[arg(long, value_name = "I/N", requires = "report_dir")]
    pub shard: Option<String>,
    /// Shard count N, with the index I from JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or
    /// SLURM_ARRAY_TASK_ID (Slurm array); the environment variable GAUNTLET_SHARDS works too.
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub shards: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The shards' report folders (written by `gauntlet run --shard I/N --report-dir DIR`), in
    /// any order; every shard of the run exactly once.
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,
    /// Where to write the merged report folder.
    #[arg(long, value_name = "DIR")]
    pub report_dir: PathBuf,
    /// The model, where it is now, if not at the path the shards recorded.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The dataset, where it is now, if not at the path the shards recorded.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Release gate, as for `run`.
    #[arg(long, value_name = "FILE")]
    pub gate: Option<PathBuf>,
    /// An earlier report.json for the gate's regression rules.
    #[arg(long, value_name = "REPORT", requires = "gate")]
    pub baseline: Option<PathBuf>,
    /// Exit 0 even when a gate rule or (with --strict) an integrity check fails.
    #[arg(long)]
    pub exit_zero: bool,
    /// Exit with status 3 when an integrity check fails.
    #[arg(long)]
    pub strict: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Worker threads for the integrity checks (default: physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Settings shared by `run` and `bench`.
#[derive(clap::Args, Debug)]
pub struct EvalOpts {
    #[command(flatten)]
    pub graph: GraphOpts,
    /// Labelled data: IDX (file or folder), .npz, .npy, .safetensors, CIFAR .bin batches (file or
    /// folder), an image folder (root/<class>/*.png|jpg|bmp) or a `path,label` .csv (docs/DATASETS.md);
    /// default: 1,000 shipped MNIST test images.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Resize every image: N (the shorter side to N, keeping the aspect ratio) or H,W; bilinear.
    #[arg(long, value_name = "N|H,W")]
    pub resize: Option<String>,
    /// Then cut the central N×N or H×W window out of every image.
    #[arg(long, value_name = "N|H,W")]
    pub center_crop: Option<String>,
    /// Axis order of 4-D image arrays in .npy/.npz/.safetensors data: auto, nchw or nhwc.
    #[arg(long, default_value = "auto", value_name = "LAYOUT")]
    pub data_layout: String,
    /// Per-channel mean subtracted inside the model (one value, or one per channel), e.g.
    /// 0.485,0.456,0.406; ε stays in [0, 1] pixel space.
    #[arg(long, value_name = "M[,M...]")]
    pub mean: Option<String>,
    /// Per-channel standard deviation divided by inside the model (as --mean), e.g. 0.229,0.224,0.225.
    #[arg(long, value_name = "S[,S...]")]
    pub std: Option<String>,
    /// Channel order the model expects: rgb, or bgr (the channels are reversed before it).
    #[arg(long, default_value = "rgb", value_name = "ORDER")]
    pub channel_order: String,
    /// Input layout the model itself takes: nchw, or nhwc (transposed before it).
    #[arg(long, default_value = "nchw", value_name = "LAYOUT")]
    pub layout: String,
    /// Evaluate only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Attack as NAME or NAME:key=value,... (repeatable); default: fgsm and pgd.
    #[arg(long = "attack", value_name = "SPEC", conflicts_with = "preset")]
    pub attacks: Vec<String>,
    /// A fixed attack set: `standard` (apgd → apgd-t → fmn → square, cascade, AutoAttack's protocol)
    /// or `quick` (fgsm, pgd, apgd).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// `independent`: every attack on every sample; `cascade`: each attack only on the samples the
    /// earlier ones left robust. Default: cascade for --preset standard, else independent.
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// Threat model norm.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// Budgets, comma-separated; fractions allowed (8/255). Default: 0.05,0.1,0.2,0.3 (linf) or 0.5,1,1.5,2 (l2).
    #[arg(long)]
    pub eps: Option<String>,
    /// Targeted attacks: class K for every sample, `random` (a random other class), `least-likely`
    /// (lowest clean logit) or `top-K` (each of the K most likely other classes in turn).
    #[arg(long, value_name = "MODE", conflicts_with = "targets")]
    pub target: Option<String>,
    /// Targeted attacks: a text file with one target class per sample.
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// Seed of every random start; results do not depend on batch size or threads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Worker threads (default: physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Exit with status 3 when an integrity check fails.
    #[arg(long, conflicts_with = "no_checks")]
    pub strict: bool,
    /// Skip the integrity checks.
    #[arg(long)]
    pub no_checks: bool,
    /// Certified bounds beside the attacks: ibp, crown, or both (ibp,crown). Proven robust
    /// accuracy ≤ the true robust accuracy ≤ the attacks' (docs/CERTIFY.md).
    #[arg(long, value_name = "METHODS")]
    pub certify: Option<String>,
    /// Samples the checks' extra attacks run on.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub check_samples: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    Standard,
    Quick,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Independent,
    Cascade,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Architecture spec (.toml; conv2d layers need `out` and `kernel`, linear layers `out`).
    #[arg(long)]
    pub spec: PathBuf,
    /// Training data (any dataset format).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Output spec path; the weights go beside it with the extension .safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// Validation data for the per-epoch clean and PGD accuracy; without it, `--holdout`
    /// samples of the training data are held out.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Training samples held out for validation when no --test is given (default: a tenth of
    /// the training data, at most 1,000).
    #[arg(long)]
    pub holdout: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// The peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = LrSchedule::Constant)]
    pub lr_schedule: LrSchedule,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// SGD's momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// L2 penalty (SGD) or decoupled decay (Adam) of the weights; biases take none.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Adversarial training: pgd (Madry et al.), fgsm-rs (Wong et al.) or trades (Zhang et al.).
    #[arg(long, value_enum)]
    pub adversarial: Option<Method>,
    /// L∞ training budget, pixel units (8/255 works).
    #[arg(long, value_parser = parse_fraction)]
    pub eps: Option<f64>,
    /// Attack steps (pgd, trades; default 10).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Attack step size at the full ε, pixel units (default 2.5·ε/steps; fgsm-rs 1.25·ε); it
    /// scales with ε during the ramp.
    #[arg(long, value_parser = parse_fraction)]
    pub step: Option<f64>,
    /// TRADES' weight of the divergence term.
    #[arg(long, default_value_t = 6.0)]
    pub beta: f64,
    /// Epochs over which ε rises linearly from 0 (may be fractional).
    #[arg(long, default_value_t = 0.0)]
    pub eps_ramp: f64,
    /// PGD steps of the per-epoch validation attack at the full ε (0: clean accuracy only).
    #[arg(long, default_value_t = 10)]
    pub val_steps: usize,
    /// Folder for the state after every epoch (default: OUT with the extension .checkpoint).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the checkpoint (starts afresh when there is none).
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N samples only.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// A number or a fraction (`8/255`), for clap.
fn parse_fraction(s: &str) -> Result<f64, String> {
    crate::attacks::parse_number(s).ok_or_else(|| format!("`{s}` is not a number (use e.g. 0.3 or 8/255)"))
}
