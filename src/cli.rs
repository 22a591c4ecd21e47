//! The command line: `gauntlet run`, `gauntlet train`, `gauntlet attacks`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::DType;
use clap::{Parser, Subcommand, ValueEnum};

use crate::attacks::{parse_number, Norm, Registry};
use crate::checks;
use crate::datasets::{self, ImageSet};
use crate::eval::{self, EvalConfig, TargetMode};
use crate::models::{self, Classifier, Sequential};
use crate::output::write_atomic;
use crate::progress::Bar;
use crate::report::{DatasetInfo, Meta, ModelInfo, Report, RunInfo, Status};

/// Exit status: success, or no gate was given.
pub const EXIT_OK: i32 = 0;
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
    /// Labelled data: IDX (file or folder), .npz, .npy or .safetensors; default: 1,000 shipped MNIST test images.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
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
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write the report to FILE: JSON, or the table if FILE ends in .txt.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
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

fn run(args: RunArgs) -> anyhow::Result<i32> {
    set_threads(args.threads)?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let norm: Norm = args.norm.parse()?;
    let eps = match &args.eps {
        Some(text) => parse_eps_list(text)?,
        None => match norm {
            Norm::Linf => vec![0.05, 0.1, 0.2, 0.3],
            Norm::L2 => vec![0.5, 1.0, 1.5, 2.0],
        },
    };
    let eps = eval::normalize_eps(&eps)?;
    let registry = Registry::default();
    let (specs, cascade) = match args.preset {
        Some(p) => {
            let (list, cascade) = p.attacks();
            (list.iter().map(|s| s.to_string()).collect(), cascade)
        }
        None if args.attacks.is_empty() => (vec!["fgsm".to_string(), "pgd".to_string()], false),
        None => (args.attacks.clone(), false),
    };
    let cascade = args.protocol.map_or(cascade, |p| p == Protocol::Cascade);
    let attacks = specs.iter().map(|s| registry.create(s)).collect::<Result<Vec<_>, _>>()?;
    let (device, warning) = models::device::resolve(&args.device)?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let (model, model_source) = load_model(args.model.as_deref(), &device)?;
    let mut data = load_dataset(args.dataset.as_deref(), args.model.is_some())?;
    if let Some(limit) = args.limit {
        if limit == 0 {
            bail!("--limit must be at least 1");
        }
        data.truncate(limit);
    }
    data.validate(model.input_shape(), model.num_classes())?;
    let targets = match (&args.target, &args.targets) {
        (Some(mode), _) => Some(parse_target_mode(mode, data.labels.len())?),
        (None, Some(path)) => Some(TargetMode::Given(read_targets(path, data.labels.len())?)),
        (None, None) => None,
    };
    let cfg = EvalConfig { attacks, norm, eps, seed: args.seed, batch_size: args.batch_size, targets, cascade };
    let bar = Bar::new(args.quiet);
    let ev = eval::evaluate(&model, &data, &cfg, &bar)?;
    let checks = if args.no_checks {
        Vec::new()
    } else {
        if !args.quiet {
            eprintln!("running integrity checks…");
        }
        checks::run(&model, &data, &cfg, &ev, &registry, args.check_samples)?
    };
    let bounds = model.bounds();
    let meta = Meta {
        model: ModelInfo {
            source: model_source,
            input: model.input_shape(),
            classes: model.num_classes(),
            parameters: model.parameter_count(),
        },
        dataset: DatasetInfo { source: data.source.clone(), samples: data.labels.len() },
        seed: args.seed,
        bounds: [bounds.lo, bounds.hi],
        run: RunInfo {
            device: format!("{device:?}").to_lowercase(),
            threads: candle_core::utils::get_num_threads(),
            batch_size: args.batch_size,
            time_s: ev.total_seconds,
            clean_time_s: ev.clean_seconds,
        },
    };
    let mut report = Report::new(&ev, meta);
    report.checks = checks;
    if let Some(path) = &args.output {
        let text = if path.extension().is_some_and(|e| e == "txt") { report.to_table() } else { report.to_json() };
        write_atomic(path, text.as_bytes())?;
    }
    match args.format {
        Format::Table => print!("{}", report.to_table()),
        Format::Json => print!("{}", report.to_json()),
    }
    let failed: Vec<&str> =
        report.checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.name.as_str()).collect();
    if !failed.is_empty() {
        eprintln!("integrity check failed: {} (see docs/CHECKS.md)", failed.join(", "));
        if args.strict {
            return Ok(EXIT_UNRELIABLE);
        }
    }
    Ok(EXIT_OK)
}

/// `K`, `random`, `least-likely` or `top-K`.
fn parse_target_mode(text: &str, n: usize) -> anyhow::Result<TargetMode> {
    let t = text.trim().to_ascii_lowercase();
    Ok(match t.as_str() {
        "random" => TargetMode::Random,
        "least-likely" | "ll" => TargetMode::LeastLikely,
        _ => match t.strip_prefix("top-").or_else(|| t.strip_prefix("top")) {
            Some(k) => TargetMode::Top(
                k.parse().ok().filter(|&k| k > 0).with_context(|| format!("--target {text}: use top-K with K ≥ 1"))?,
            ),
            None => TargetMode::Given(vec![
                t.parse::<u32>().ok().with_context(|| {
                    format!("--target {text}: use a class index, random, least-likely or top-K")
                })?;
                n
            ]),
        },
    })
}

fn load_model(path: Option<&Path>, device: &candle_core::Device) -> anyhow::Result<(Sequential, String)> {
    Ok(match path {
        Some(p) => (models::load_model(p, DType::F32, device)?, p.display().to_string()),
        None => (models::zoo::mnist_cnn(device)?, models::zoo::MNIST_CNN.to_string()),
    })
}

fn load_dataset(path: Option<&Path>, custom_model: bool) -> anyhow::Result<ImageSet> {
    match path {
        Some(p) => Ok(datasets::open(p)?),
        None if custom_model => {
            bail!("--dataset is required with --model (the shipped data fits only the shipped model)")
        }
        None => Ok(datasets::samples::mnist_test_1k()?),
    }
}

fn read_targets(path: &Path, n: usize) -> anyhow::Result<Vec<u32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the targets file", path.display()))?;
    let targets = text
        .split_whitespace()
        .map(|t| t.parse::<u32>().with_context(|| format!("{}: `{t}` is not a class index", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if targets.len() < n {
        bail!("{}: {} targets for {n} samples", path.display(), targets.len());
    }
    Ok(targets[..n].to_vec())
}
