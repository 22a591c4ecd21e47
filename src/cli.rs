//! The command line: `gauntlet run`, `bench`, `verify`, `diff`, `train`, `attacks`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use crate::attacks::{parse_number, Norm, Registry};
use crate::datasets::{self, DataLayout, OpenOptions, Resize};
use crate::eval;
use crate::gate::Gate;
use crate::models;
use crate::models::preprocess::{ChannelOrder, Layout, Preprocess};
use crate::models::LoadOptions;
use crate::output::write_atomic;
use crate::pipeline::{self, Settings};
use crate::report::{Report, Status};

/// Exit status: success, or no gate was given.
pub const EXIT_OK: i32 = 0;
/// Exit status: a gate rule failed.
pub const EXIT_GATE: i32 = 1;
/// Exit status: usage or input error.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: `--strict` and an integrity check failed (the numbers cannot be trusted).
pub const EXIT_UNRELIABLE: i32 = 3;

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
}

impl GraphOpts {
    /// The loader options these flags ask for.
    pub fn load_options(&self) -> anyhow::Result<models::LoadOptions> {
        let input_shape = match &self.input_shape {
            None => None,
            Some(text) => {
                let v: Vec<usize> = text
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .ok()
                    .filter(|v: &Vec<usize>| v.len() == 3 && v.iter().all(|&d| d > 0))
                    .with_context(|| {
                        format!("--input-shape: `{text}` is not three positive sizes C,H,W (e.g. 3,224,224)")
                    })?;
                Some([v[0], v[1], v[2]])
            }
        };
        Ok(models::LoadOptions {
            input_name: self.input_name.clone(),
            output_name: self.output_name.clone(),
            input_shape,
            keep_softmax: self.keep_softmax,
            ..Default::default()
        })
    }
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
    /// Model specs (.toml), or `builtin:mnist-cnn` for the shipped model.
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
    /// Samples the checks' extra attacks run on.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub check_samples: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    Standard,
    Quick,
}

impl Preset {
    /// The attacks, in order, and whether they run as a cascade.
    pub fn attacks(self) -> (&'static [&'static str], bool) {
        match self {
            Preset::Standard => (&["apgd", "apgd-t", "fmn", "square"], true),
            Preset::Quick => (&["fgsm", "pgd", "apgd"], false),
        }
    }
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
    /// Held-out data to report accuracy on after each epoch.
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N samples only.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Parses the command line, runs it and returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return EXIT_OK;
        }
        Err(e) => {
            // One line: clap's first line, without its tips and usage block.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: invalid arguments").trim_end();
            eprintln!("{first} (see `gauntlet --help`)");
            return EXIT_USAGE;
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            EXIT_USAGE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Train(args) => {
            set_threads(args.threads)?;
            crate::train::train(&args)?;
            Ok(EXIT_OK)
        }
        Command::Attacks => {
            for (name, summary) in Registry::default().summaries() {
                println!("{name:<10} {summary}");
            }
            Ok(EXIT_OK)
        }
        Command::Bench(args) => crate::bench::bench(&args),
        Command::Verify(args) => crate::compare::verify(&args),
        Command::Diff(args) => crate::compare::diff(&args),
        Command::Inspect(args) => crate::pipeline::inspect(&args),
    }
}

/// Sets the worker thread count before the first tensor operation starts the pool.
fn set_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(t) = threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    Ok(())
}

/// Parses a comma-separated list of budgets.
pub fn parse_eps_list(text: &str) -> anyhow::Result<Vec<f64>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_number(s).with_context(|| format!("--eps: `{s}` is not a number (use e.g. 0.1,0.2,8/255)")))
        .collect()
}

impl EvalOpts {
    /// Resolves the options into settings (model and adversarial-example count set by the caller).
    pub fn settings(&self, model: Option<PathBuf>, keep: usize) -> anyhow::Result<Settings> {
        set_threads(self.threads)?;
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let norm: Norm = self.norm.parse()?;
        let eps = match &self.eps {
            Some(text) => parse_eps_list(text)?,
            None => match norm {
                Norm::Linf => vec![0.05, 0.1, 0.2, 0.3],
                Norm::L2 => vec![0.5, 1.0, 1.5, 2.0],
            },
        };
        let eps = eval::normalize_eps(&eps)?;
        let (specs, cascade) = match self.preset {
            Some(p) => {
                let (list, cascade) = p.attacks();
                (list.iter().map(|s| s.to_string()).collect(), cascade)
            }
            None if self.attacks.is_empty() => (vec!["fgsm".to_string(), "pgd".to_string()], false),
            None => (self.attacks.clone(), false),
        };
        // Fail on a bad attack spec before anything is loaded.
        let registry = Registry::default();
        for spec in &specs {
            registry.create(spec)?;
        }
        Ok(Settings {
            model: model.filter(|m| !pipeline::is_builtin_model(m)),
            dataset: self.dataset.clone(),
            limit: self.limit,
            attacks: specs,
            cascade: self.protocol.map_or(cascade, |p| p == Protocol::Cascade),
            norm,
            eps,
            target: self.target.clone(),
            targets_file: self.targets.clone(),
            seed: self.seed,
            batch_size: self.batch_size,
            device: self.device.clone(),
            checks: !self.no_checks,
            check_samples: self.check_samples,
            quiet: self.quiet,
            keep,
            model_options: LoadOptions { preprocess: self.preprocess()?, ..self.graph.load_options()? },
            data_options: self.data_options()?,
        })
    }

    /// The pixel-space preprocessing from --mean, --std, --channel-order and --layout.
    pub fn preprocess(&self) -> anyhow::Result<Preprocess> {
        let pre = Preprocess {
            mean: self.mean.as_deref().map(|t| parse_floats("--mean", t)).transpose()?.unwrap_or_default(),
            std: self.std.as_deref().map(|t| parse_floats("--std", t)).transpose()?.unwrap_or_default(),
            channel_order: match self.channel_order.trim().to_ascii_lowercase().as_str() {
                "rgb" => ChannelOrder::Rgb,
                "bgr" => ChannelOrder::Bgr,
                other => bail!("--channel-order {other}: use rgb or bgr"),
            },
            layout: match self.layout.trim().to_ascii_lowercase().as_str() {
                "nchw" => Layout::Nchw,
                "nhwc" => Layout::Nhwc,
                other => bail!("--layout {other}: use nchw or nhwc (the model's own input layout)"),
            },
        };
        // Counts against the model's channels are checked when it loads; these need no model.
        let (m, s) = (pre.mean.len(), pre.std.len());
        if m > 1 && s > 1 && m != s {
            bail!("--mean has {m} values and --std {s}; give one value or one per channel to each");
        }
        pre.validate(m.max(s).max(1))?;
        Ok(pre)
    }

    /// How to read the data: --resize, --center-crop, --data-layout.
    pub fn data_options(&self) -> anyhow::Result<OpenOptions> {
        Ok(OpenOptions {
            resize: self.resize.as_deref().map(str::parse::<Resize>).transpose()?,
            center_crop: self.center_crop.as_deref().map(datasets::parse_crop).transpose()?,
            layout: self.data_layout.parse::<DataLayout>()?,
            cifar: None,
        })
    }
}

/// A comma-separated list of finite numbers.
fn parse_floats(flag: &str, text: &str) -> anyhow::Result<Vec<f32>> {
    text.split(',')
        .map(str::trim)
        .map(|s| {
            s.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("{flag} {text}: `{s}` is not a number (give e.g. 0.485,0.456,0.406)"))
        })
        .collect()
}

/// The attack names a run will report (as `Attack::name` gives them).
fn attack_names(specs: &[String]) -> anyhow::Result<Vec<String>> {
    let registry = Registry::default();
    specs.iter().map(|s| Ok(registry.create(s)?.name().to_string())).collect()
}

/// Reads a report.json; errors name the file.
pub fn read_report(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the report", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a gauntlet report.json (schema version 1 or 2)", path.display()))
}

fn run(args: RunArgs) -> anyhow::Result<i32> {
    // Examples are kept for the HTML report even without --save-adversarial.
    let keep = args.save_adversarial.unwrap_or(if args.report_dir.is_some() { 8 } else { 0 });
    let settings = args.eval.settings(args.model.clone(), keep)?;
    // Everything that can fail on bad input fails before the evaluation starts.
    let gate = match &args.gate {
        Some(path) => {
            let g = Gate::read(path)?;
            g.check_against(
                &attack_names(&settings.attacks)?,
                settings.norm.name(),
                &settings.eps,
                args.baseline.is_some(),
            )?;
            Some(g)
        }
        None => None,
    };
    let baseline = args.baseline.as_deref().map(read_report).transpose()?;
    if let Some(dir) = &args.report_dir {
        if dir.exists() && !dir.is_dir() {
            bail!("--report-dir {}: exists and is not a folder", dir.display());
        }
    }
    let mut out = pipeline::evaluate(&settings)?;
    if let (Some(g), Some(path)) = (&gate, &args.gate) {
        if let (Some(b), Some(bp)) = (&baseline, &args.baseline) {
            if b.provenance.as_ref().map(|p| &p.dataset_files)
                != out.report.provenance.as_ref().map(|p| &p.dataset_files)
                || b.samples != out.report.samples
            {
                eprintln!(
                    "warning: the baseline {} was measured on other data; regression rules compare unlike numbers",
                    bp.display()
                );
            }
        }
        let base = baseline.as_ref().zip(args.baseline.as_ref()).map(|(b, p)| (p.to_str().unwrap_or("baseline"), b));
        out.report.gate = Some(g.evaluate(&path.display().to_string(), &out.report, base));
    }
    let report = &out.report;
    if let Some(path) = &args.output {
        let text = if path.extension().is_some_and(|e| e == "txt") { report.to_table() } else { report.to_json() };
        write_atomic(path, text.as_bytes())?;
    }
    if let Some(dir) = &args.report_dir {
        pipeline::write_report_dir(dir, &out, args.save_adversarial.is_some())?;
    }
    match args.format {
        Format::Table => print!("{}", report.to_table()),
        Format::Json => print!("{}", report.to_json()),
    }
    let mut code = EXIT_OK;
    if let Some(g) = &report.gate {
        for v in &g.rules {
            eprintln!("{} {}: {}", if v.passed { "PASS" } else { "FAIL" }, v.name, v.message);
        }
        let failed = g.rules.iter().filter(|v| !v.passed).count();
        if failed == 0 {
            eprintln!("gate passed: {} rule(s)", g.rules.len());
        } else {
            eprintln!("gate FAILED: {failed} of {} rule(s)", g.rules.len());
            code = EXIT_GATE;
        }
    }
    let failed: Vec<&str> =
        report.checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.name.as_str()).collect();
    if !failed.is_empty() {
        eprintln!("integrity check failed: {} (see docs/CHECKS.md)", failed.join(", "));
        if args.eval.strict {
            code = EXIT_UNRELIABLE;
        }
    }
    if code != EXIT_OK && args.exit_zero {
        eprintln!("--exit-zero: exiting 0 instead of {code}");
        code = EXIT_OK;
    }
    Ok(code)
}
