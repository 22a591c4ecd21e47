//! One evaluation from settings to report, shared by `gauntlet run` and `gauntlet bench`: load,
//! evaluate, check, record provenance; and the report folder's fixed file names.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use serde_json::json;

use crate::adversarial::{self, AdvExample};
use crate::attacks::{Norm, Registry};
use crate::checks;
use crate::datasets::{self, ImageSet, OpenOptions};
use crate::eval::{self, EvalConfig, TargetMode};
use crate::models::preprocess::Preprocessed;
use crate::models::{self, Classifier, LoadOptions};
use crate::output::write_atomic;
use crate::progress::Bar;
use crate::provenance::{self, Provenance};
use crate::report::{DatasetInfo, Meta, ModelInfo, Report, RunInfo};
use crate::samples::{self, SampleRecord};

/// Everything an evaluation needs, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: the shipped model.
    pub model: Option<PathBuf>,
    /// `None`: the shipped data.
    pub dataset: Option<PathBuf>,
    pub limit: Option<usize>,
    pub attacks: Vec<String>,
    pub cascade: bool,
    pub norm: Norm,
    pub eps: Vec<f64>,
    pub target: Option<String>,
    pub targets_file: Option<PathBuf>,
    pub seed: u64,
    pub batch_size: usize,
    pub device: String,
    pub checks: bool,
    pub check_samples: usize,
    pub quiet: bool,
    /// Adversarial examples to keep per attack (for `--save-adversarial` and the HTML report).
    pub keep: usize,
    /// Graph input/output choice and the pixel-space preprocessing.
    pub model_options: LoadOptions,
    /// How the dataset is read: resize, center crop, array layout.
    pub data_options: OpenOptions,
}

/// A finished evaluation: the report and what only the report folder holds.
pub struct Outcome {
    pub report: Report,
    pub samples: Vec<SampleRecord>,
    pub examples: Vec<AdvExample>,
}

impl Settings {
    /// The resolved configuration recorded in the report: every setting that can change the numbers.
    pub fn config(&self, model_source: &str, dataset_source: &str, registry: &Registry) -> serde_json::Value {
        let attacks: Vec<String> = self
            .attacks
            .iter()
            .map(|s| match registry.create(s) {
                Ok(a) => format!("{}:{}", a.name(), a.params()),
                Err(_) => s.clone(),
            })
            .collect();
        let mut config = json!({
            "model": model_source,
            "dataset": dataset_source,
            "limit": self.limit,
            "attacks": attacks,
            "protocol": if self.cascade { "cascade" } else { "independent" },
            "norm": self.norm.name(),
            "eps": self.eps,
            "target": self.target,
            "targets_file": self.targets_file.as_ref().map(|p| p.display().to_string()),
            "seed": self.seed,
            "batch_size": self.batch_size,
            "checks": self.checks,
            "check_samples": self.check_samples,
        });
        // Recorded only when set, so that the configuration (and its hash) of a run without them
        // stays what it was before these options existed.
        let pre = &self.model_options.preprocess;
        if !pre.is_identity() {
            config["preprocessing"] = json!(pre.describe());
        }
        if !self.data_options.is_default() {
            config["data_options"] = json!(self.data_options.describe());
        }
        config
    }
}

/// Loads, evaluates, checks and builds the report (with provenance).
pub fn evaluate(s: &Settings) -> anyhow::Result<Outcome> {
    let started_at = provenance::now();
    let registry = Registry::default();
    let attacks = s.attacks.iter().map(|a| registry.create(a)).collect::<Result<Vec<_>, _>>()?;
    let (device, warning) = models::device::resolve(&s.device)?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let (model, model_source) = load_model(s.model.as_deref(), &device, &s.model_options)?;
    if let Some(issue) = model.gradient_issue() {
        let gradient: Vec<String> =
            attacks.iter().filter(|a| a.needs_gradients()).map(|a| a.name().to_string()).collect();
        if !gradient.is_empty() {
            bail!(
                "{}: {issue}: gradient attacks ({}) would overstate robustness; use a gradient-free attack (--attack square) or remove the operator from the exported graph",
                model_source,
                gradient.join(", ")
            );
        }
    }
    let mut data = load_dataset(s.dataset.as_deref(), s.model.is_some(), &s.data_options)?;
    if let Some(limit) = s.limit {
        if limit == 0 {
            bail!("--limit must be at least 1");
        }
        data.truncate(limit);
    }
    data.validate(model.input_shape(), model.num_classes())?;
    let targets = match (&s.target, &s.targets_file) {
        (Some(mode), _) => Some(parse_target_mode(mode, data.labels.len())?),
        (None, Some(path)) => Some(TargetMode::Given(read_targets(path, data.labels.len())?)),
        (None, None) => None,
    };
    // Hash before evaluating: the files cannot change unnoticed while the run reads them.
    let model_files = provenance::model_files(s.model.as_deref())?;
    let dataset_files = provenance::dataset_files(s.dataset.as_deref())?;
    let cfg = EvalConfig {
        attacks,
        norm: s.norm,
        eps: s.eps.clone(),
        seed: s.seed,
        batch_size: s.batch_size,
        targets,
        cascade: s.cascade,
    };
    let bar = Bar::new(s.quiet);
    let ev = eval::evaluate_keeping(&model, &data, &cfg, &bar, s.keep)?;
    let checks = if s.checks {
        if !s.quiet {
            eprintln!("running integrity checks…");
        }
        checks::run(&model, &data, &cfg, &ev, &registry, s.check_samples)?
    } else {
        Vec::new()
    };
    let bounds = model.bounds();
    let meta = Meta {
        model: ModelInfo {
            source: model_source.clone(),
            input: model.input_shape(),
            classes: model.num_classes(),
            parameters: model.parameter_count(),
            preprocessing: s.model_options.preprocess.describe(),
        },
        dataset: DatasetInfo { source: data.source.clone(), samples: data.labels.len() },
        seed: s.seed,
        bounds: [bounds.lo, bounds.hi],
        run: RunInfo {
            device: format!("{device:?}").to_lowercase(),
            threads: candle_core::utils::get_num_threads(),
            batch_size: s.batch_size,
            time_s: ev.total_seconds,
            clean_time_s: ev.clean_seconds,
        },
    };
    let mut report = Report::new(&ev, meta);
    report.checks = checks;
    let config = s.config(&model_source, &data.source, &registry);
    report.provenance = Some(Provenance {
        model_files,
        dataset_files,
        config_sha256: provenance::config_hash(&config),
        config,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: provenance::git_commit(),
        command: std::env::args().collect(),
        started_at,
        finished_at: provenance::now(),
    });
    let samples = samples::records(&ev);
    let examples = adversarial::collect(&ev, &data);
    Ok(Outcome { report, samples, examples })
}

/// The fixed file names of a report folder.
pub mod names {
    pub const REPORT_JSON: &str = "report.json";
    pub const SAMPLES_JSONL: &str = "samples.jsonl";
    pub const SUMMARY_MD: &str = "summary.md";
    pub const JUNIT_XML: &str = "junit.xml";
    pub const REPORT_HTML: &str = "report.html";
    pub const ADVERSARIAL_DIR: &str = "adversarial";
}

/// Writes every output into `dir` (created if needed), each file atomically; `report.json` last, so
/// a folder with a `report.json` is complete.
pub fn write_report_dir(dir: &Path, out: &Outcome, save_adversarial: bool) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the report folder", dir.display()))?;
    let mut written = Vec::new();
    let mut put = |name: &str, text: String| -> anyhow::Result<()> {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes())?;
        written.push(path);
        Ok(())
    };
    put(names::SAMPLES_JSONL, samples::to_jsonl(&out.samples))?;
    put(names::SUMMARY_MD, crate::markdown::summary(&out.report))?;
    put(names::JUNIT_XML, crate::junit::render(&out.report))?;
    put(names::REPORT_HTML, crate::html::report(&out.report, &out.samples, &out.examples))?;
    if save_adversarial {
        written.extend(adversarial::save(&dir.join(names::ADVERSARIAL_DIR), &out.examples, out.report.bounds)?);
    }
    let path = dir.join(names::REPORT_JSON);
    write_atomic(&path, out.report.to_json().as_bytes())?;
    written.push(path);
    Ok(written)
}

/// `K`, `random`, `least-likely` or `top-K`.
pub fn parse_target_mode(text: &str, n: usize) -> anyhow::Result<TargetMode> {
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

/// The model at `path`, or the shipped one (`None` or `builtin:mnist-cnn`).
pub fn load_model(
    path: Option<&Path>,
    device: &Device,
    opts: &LoadOptions,
) -> anyhow::Result<(Box<dyn Classifier>, String)> {
    Ok(match path {
        Some(p) if !is_builtin_model(p) => {
            (models::load_classifier(p, DType::F32, device, opts)?, p.display().to_string())
        }
        _ => {
            let zoo = models::zoo::mnist_cnn(device)?;
            let model: Box<dyn Classifier> = if opts.preprocess.is_identity() {
                Box::new(zoo)
            } else {
                Box::new(Preprocessed::new(zoo, opts.preprocess.clone())?)
            };
            (model, models::zoo::MNIST_CNN.to_string())
        }
    })
}

/// `gauntlet inspect`: prints what the model is and whether it can be attacked with gradients.
pub fn inspect(args: &crate::cli::InspectArgs) -> anyhow::Result<i32> {
    if args.operators {
        print!("{}", models::onnx::operator_list());
        if args.model.is_none() {
            return Ok(crate::cli::EXIT_OK);
        }
    }
    let Some(path) = args.model.as_deref() else { return Ok(crate::cli::EXIT_OK) };
    let opts = args.graph.load_options()?;
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        print!("{}", models::onnx::inspect(path, &opts)?);
        return Ok(crate::cli::EXIT_OK);
    }
    let (model, source) = load_model(Some(path), &Device::Cpu, &opts)?;
    let [c, h, w] = model.input_shape();
    println!("model      {source}");
    println!("input      ({c}, {h}, {w}) pixels in [{}, {}]", model.bounds().lo, model.bounds().hi);
    println!("classes    {}", model.num_classes());
    println!("parameters {}", model.parameter_count());
    match model.gradient_issue() {
        None => println!("gradient   available"),
        Some(issue) => println!("gradient   MASKED: {issue}"),
    }
    Ok(crate::cli::EXIT_OK)
}

/// Whether a model argument names the shipped model.
pub fn is_builtin_model(p: &Path) -> bool {
    p.as_os_str() == models::zoo::MNIST_CNN
}

/// The dataset at `path` read with `opts`, or the shipped data (`None`, only with the shipped model).
pub fn load_dataset(path: Option<&Path>, custom_model: bool, opts: &OpenOptions) -> anyhow::Result<ImageSet> {
    match path {
        Some(p) => Ok(datasets::open_with(p, opts)?),
        None if custom_model => {
            bail!("--dataset is required with --model (the shipped data fits only the shipped model)")
        }
        None => Ok(datasets::fit_all(datasets::samples::mnist_test_1k()?, opts)?),
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
