//! One whole run, from a validated [`RunConfig`] to a report: load the model and the data, run the
//! sweep ([`crate::eval`]) and the integrity checks ([`crate::checks`]), record provenance. Shared
//! by `gauntlet run` and `gauntlet bench`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use gauntlet_attacks::{Attack, Norm, Registry};
use gauntlet_datasets::{self as datasets, ImageSet, Limited, OpenOptions, Source};
use gauntlet_models::bounds::{BoundNet, Method};
use gauntlet_models::preprocess::Preprocessed;
use gauntlet_models::{self as models, Classifier, LoadOptions};
use serde_json::json;

pub mod checkpoint;
pub mod shard;

pub use checkpoint::{Checkpoint, Manifest};
pub use shard::Shard;

use crate::checks;
use crate::eval::{self, normalize_eps, EvalConfig, Evaluation, Progress, TargetMode};
use crate::report::adversarial::AdvExample;
use crate::report::provenance::{self, FileHash, Provenance};
use crate::report::samples::SampleRecord;
use crate::report::{DatasetInfo, Meta, ModelInfo, Report, RunInfo};
use crate::{Error, Result};

/// Everything one evaluation needs, validated by [`RunConfig::check`].
#[derive(Debug)]
pub struct RunConfig {
    /// `None`: the shipped model.
    pub model: Option<PathBuf>,
    /// `None`: the shipped data (only with the shipped model).
    pub dataset: Option<PathBuf>,
    pub limit: Option<usize>,
    /// The attacks, in order, built once from their specs.
    pub attacks: Vec<Box<dyn Attack>>,
    pub cascade: bool,
    pub norm: Norm,
    pub eps: Vec<f64>,
    pub target: Option<Target>,
    pub seed: u64,
    pub batch_size: usize,
    pub device: Device,
    pub checks: bool,
    /// Certification methods to run after the attacks (`--certify`).
    pub certify: Vec<Method>,
    pub check_samples: usize,
    /// Adversarial examples to keep per attack (for `--save-adversarial` and the HTML report).
    pub keep: usize,
    /// Graph input/output choice and the pixel-space preprocessing.
    pub model_options: LoadOptions,
    /// How the dataset is read: resize, center crop, array layout.
    pub data_options: OpenOptions,
    /// Evaluate only this slice of the samples (`--shard I/N`).
    pub shard: Option<Shard>,
    /// The report folder, where finished batches are checkpointed.
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint in the report folder, if there is one.
    pub resume: bool,
}

/// How the targets of a targeted run are given.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Class K for every sample.
    Class(u32),
    Random,
    LeastLikely,
    Top(usize),
    /// One class per sample, read from a text file.
    File(PathBuf),
}

impl Target {
    /// `K`, `random`, `least-likely` (or `ll`) or `top-K`.
    pub fn parse(text: &str) -> Result<Target> {
        let t = text.trim().to_ascii_lowercase();
        let bad = |hint: &str| Error::Config(format!("--target {text}: {hint}"));
        Ok(match t.as_str() {
            "random" => Target::Random,
            "least-likely" | "ll" => Target::LeastLikely,
            _ => match t.strip_prefix("top-").or_else(|| t.strip_prefix("top")) {
                Some(k) => Target::Top(k.parse().ok().filter(|&k| k > 0).ok_or_else(|| bad("use top-K with K ≥ 1"))?),
                None => Target::Class(t.parse().map_err(|_| bad("use a class index, random, least-likely or top-K"))?),
            },
        })
    }

    /// The mode as recorded in the configuration (`None` for a targets file).
    fn describe(&self) -> Option<String> {
        match self {
            Target::Class(k) => Some(k.to_string()),
            Target::Random => Some("random".into()),
            Target::LeastLikely => Some("least-likely".into()),
            Target::Top(k) => Some(format!("top-{k}")),
            Target::File(_) => None,
        }
    }

    /// The evaluator's targets for `n` samples.
    fn mode(&self, n: usize) -> Result<TargetMode> {
        Ok(match self {
            Target::Class(k) => TargetMode::Given(vec![*k; n]),
            Target::Random => TargetMode::Random,
            Target::LeastLikely => TargetMode::LeastLikely,
            Target::Top(k) => TargetMode::Top(*k),
            Target::File(path) => TargetMode::Given(read_targets(path, n)?),
        })
    }
}

/// A finished evaluation: the report, what only the report folder holds, and what the user should
/// be told (notes from loading the model).
pub struct Outcome {
    pub report: Report,
    pub samples: Vec<SampleRecord>,
    pub examples: Vec<AdvExample>,
    pub notes: Vec<String>,
    /// The checkpoint of a finished run, removed once the report folder is written.
    pub checkpoint: Option<Checkpoint>,
}

impl Outcome {
    /// Writes every output into `dir` (see [`crate::report::dir::write`]), then removes the
    /// run's checkpoint: the report now holds everything.
    pub fn write_dir(&mut self, dir: &Path, save_adversarial: bool) -> Result<Vec<PathBuf>> {
        let written = crate::report::dir::write(dir, &self.report, &self.samples, &self.examples, save_adversarial)?;
        if let Some(c) = self.checkpoint.take() {
            c.remove()?;
        }
        Ok(written)
    }
}

impl RunConfig {
    /// Refuses settings that cannot work, before anything is loaded.
    pub fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Config("--batch-size must be at least 1".into()));
        }
        if self.limit == Some(0) {
            return Err(Error::Config("--limit must be at least 1".into()));
        }
        if self.attacks.is_empty() {
            return Err(Error::Config("no attack given".into()));
        }
        normalize_eps(&self.eps)?;
        if !self.certify.is_empty() && self.target.is_some() {
            return Err(Error::Config(
                "--certify proves that no point of the ball changes the prediction (untargeted); drop --target".into(),
            ));
        }
        Ok(())
    }

    /// The attack names, as reports give them.
    pub fn attack_names(&self) -> Vec<String> {
        self.attacks.iter().map(|a| a.name().to_string()).collect()
    }

    /// The resolved configuration recorded in the report: every setting that can change the numbers.
    pub fn config(&self, model_source: &str, dataset_source: &str) -> serde_json::Value {
        let attacks: Vec<String> = self.attacks.iter().map(|a| format!("{}:{}", a.name(), a.params())).collect();
        let target_file = match &self.target {
            Some(Target::File(p)) => Some(p.display().to_string()),
            _ => None,
        };
        let mut config = json!({
            "model": model_source,
            "dataset": dataset_source,
            "limit": self.limit,
            "attacks": attacks,
            "protocol": if self.cascade { "cascade" } else { "independent" },
            "norm": self.norm.name(),
            "eps": self.eps,
            "target": self.target.as_ref().and_then(Target::describe),
            "targets_file": target_file,
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
        if let Some(shard) = self.shard {
            config["shard"] = json!(shard.to_string());
        }
        if !self.certify.is_empty() {
            config["certify"] = json!(self.certify.iter().map(|m| m.name()).collect::<Vec<_>>());
        }
        config
    }

    /// Loads, evaluates, checks and builds the report (with provenance).
    pub fn evaluate(self, progress: &dyn Progress) -> Result<Outcome> {
        let prepared = self.prepare(true)?;
        let checkpoint = match &prepared.run.checkpoint {
            Some(dir) => Some(Checkpoint::open(dir, prepared.manifest(), prepared.run.resume)?),
            None => None,
        };
        let ev = match prepared.sweep(checkpoint.as_ref(), progress) {
            Ok(ev) => ev,
            Err(e) => {
                // An interrupted run keeps its checkpoint; any other error cannot be resumed past.
                if let Some(c) = checkpoint.filter(|_| !matches!(e, Error::Interrupted { .. })) {
                    c.discard();
                }
                return Err(e);
            }
        };
        prepared.finish(ev, checkpoint, progress)
    }

    /// Joins the evaluations of a run's shards (read from their checkpoints by `gauntlet merge`)
    /// into the outcome of one run of this configuration, running the integrity checks on the
    /// whole. `shards` must be the evaluations of consecutive slices, in order, made with this
    /// configuration (the caller compares their manifests with [`RunConfig::manifest`]).
    pub fn merge(self, shards: Vec<Evaluation>, progress: &dyn Progress) -> Result<Outcome> {
        let prepared = self.prepare(false)?;
        let ev = Evaluation::concat(shards, prepared.run.keep)?;
        if ev.samples() != prepared.data.len() {
            return Err(Error::Config(format!(
                "the shards hold {} samples but the dataset has {}",
                ev.samples(),
                prepared.data.len()
            )));
        }
        prepared.finish(ev, None, progress)
    }

    /// The checkpoint manifest of this run (model and dataset files hashed, nothing else loaded
    /// beyond the dataset's labels).
    pub fn manifest(self) -> Result<Manifest> {
        Ok(self.prepare(false)?.manifest())
    }

    /// Loads the model and opens the data, refusing what cannot be evaluated.
    fn prepare(self, validate: bool) -> Result<Prepared> {
        self.check()?;
        let started_at = provenance::now();
        let (model, model_source) = load_model(self.model.as_deref(), &self.device, &self.model_options)?;
        if let Some(issue) = model.gradient_issue() {
            let gradient: Vec<&str> = self.attacks.iter().filter(|a| a.needs_gradients()).map(|a| a.name()).collect();
            if !gradient.is_empty() {
                return Err(Error::Input {
                    path: model_source,
                    message: format!(
                        "{issue}: gradient attacks ({}) would overstate robustness; use a gradient-free attack (--attack square) or remove the operator from the exported graph",
                        gradient.join(", ")
                    ),
                });
            }
        }
        // A model bounds cannot pass through is refused before any work.
        let net = match self.certify.is_empty() {
            true => None,
            false => Some(model.bound_net().map_err(|e| Error::Input {
                path: model_source.clone(),
                message: format!("{e}; run without --certify to evaluate it with attacks only"),
            })?),
        };
        let bounds = model.bounds();
        let range = f64::from(bounds.hi - bounds.lo);
        if let Some(e) = self.eps.iter().find(|&&e| self.norm == Norm::Linf && e > range * (1.0 + 1e-9)) {
            return Err(Error::Config(format!(
                "--eps {e}: an L∞ budget above the pixel range {range} of [{}, {}] allows any image; use ε ≤ {range}",
                bounds.lo, bounds.hi
            )));
        }
        if self.model.as_deref().is_some_and(models::zoo::needs_dataset) && self.dataset.is_none() {
            return Err(Error::Config(
                "--dataset is required with --model (the shipped data fits only the shipped MNIST models)".into(),
            ));
        }
        let mut data = load_source(self.dataset.as_deref(), &self.data_options)?;
        if let Some(limit) = self.limit {
            data = Box::new(Limited::new(data, limit));
        }
        if validate {
            data.validate(model.input_shape(), model.num_classes())?;
        }
        let targets = self.target.as_ref().map(|t| t.mode(data.len())).transpose()?;
        if let Some(mode) = &targets {
            mode.check(data.len(), model.num_classes())?;
        }
        // Hash before evaluating: the files cannot change unnoticed while the run reads them.
        let model_files = provenance::model_files(self.model.as_deref())?;
        let dataset_files = provenance::dataset_files(self.dataset.as_deref())?;
        let config = self.config(&model_source, data.source());
        Ok(Prepared {
            model,
            model_source,
            net,
            data,
            targets,
            model_files,
            dataset_files,
            config,
            started_at,
            run: self,
        })
    }
}

/// A run with its model loaded and its data opened.
struct Prepared {
    model: Box<dyn Classifier>,
    model_source: String,
    /// The model for certified bounds (with `--certify`).
    net: Option<BoundNet>,
    data: Box<dyn Source>,
    targets: Option<TargetMode>,
    model_files: Vec<FileHash>,
    dataset_files: Vec<FileHash>,
    config: serde_json::Value,
    started_at: String,
    run: RunConfig,
}

impl Prepared {
    /// The samples this run evaluates: all of them, or its shard's slice.
    fn range(&self) -> std::ops::Range<usize> {
        match self.run.shard {
            Some(s) => s.range(self.data.len()),
            None => 0..self.data.len(),
        }
    }

    fn manifest(&self) -> Manifest {
        let r = self.range();
        Manifest {
            format: checkpoint::FORMAT,
            config: self.config.clone(),
            model_files: self.model_files.clone(),
            dataset_files: self.dataset_files.clone(),
            samples: self.data.len(),
            range: [r.start, r.end],
            block: self.run.batch_size.max(1),
            keep: self.run.keep,
            command: std::env::args().collect(),
        }
    }

    fn eval_config(&self) -> EvalConfig {
        EvalConfig {
            attacks: Vec::new(),
            norm: self.run.norm,
            eps: self.run.eps.clone(),
            seed: self.run.seed,
            batch_size: self.run.batch_size,
            targets: self.targets.clone(),
            cascade: self.run.cascade,
        }
    }

    /// Evaluates the run's samples batch by batch: each batch's images are read, evaluated by
    /// every attack at every budget, and (with a report folder) checkpointed before the next.
    fn sweep(&self, checkpoint: Option<&Checkpoint>, progress: &dyn Progress) -> Result<Evaluation> {
        let cfg = self.eval_config();
        let attacks: Vec<&dyn Attack> = self.run.attacks.iter().map(|a| a.as_ref()).collect();
        let range = self.range();
        progress.start(eval::work(range.len(), &attacks, &cfg)?);
        let mut parts = Vec::new();
        for (j, block) in self.manifest().blocks().enumerate() {
            let kept = match checkpoint {
                Some(c) => c.load_part(j, &block)?,
                None => None,
            };
            let part = match kept {
                Some(part) => {
                    progress.advance(eval::work(block.len(), &attacks, &cfg)?, "resumed");
                    part
                }
                None => {
                    let images = self.data.read(block.clone())?;
                    let part = eval::sweep(&*self.model, &images, block.start, &attacks, &cfg, progress, self.run.keep)
                        .map_err(|e| self.named(e, &parts, &range, checkpoint))?;
                    if let Some(c) = checkpoint {
                        c.save_part(j, &part)?;
                    }
                    part
                }
            };
            parts.push(part);
        }
        progress.finish();
        Evaluation::concat(parts, self.run.keep)
    }

    /// An evaluator error as the user should see it: non-finite logits name the model, an
    /// interruption says what was kept.
    fn named(&self, e: Error, done: &[Evaluation], range: &std::ops::Range<usize>, cp: Option<&Checkpoint>) -> Error {
        match e {
            Error::NonFiniteOutput { .. } => Error::Input { path: self.model_source.clone(), message: e.to_string() },
            Error::Interrupted { .. } => Error::Interrupted {
                done: done.iter().map(Evaluation::samples).sum(),
                total: range.len(),
                checkpoint: cp.map(|c| c.dir().display().to_string()),
            },
            e => e,
        }
    }

    /// Runs the integrity checks (not for a shard: `gauntlet merge` runs them on the whole) and
    /// builds the report.
    fn finish(mut self, ev: Evaluation, checkpoint: Option<Checkpoint>, progress: &dyn Progress) -> Result<Outcome> {
        let base = self.eval_config();
        let cfg = EvalConfig { attacks: std::mem::take(&mut self.run.attacks), ..base };
        let run = &self.run;
        let checks = if run.checks && run.shard.is_none() {
            match checkpoint.as_ref().map(Checkpoint::load_checks).transpose()?.flatten() {
                Some(checks) => checks,
                None => {
                    progress.stage("running integrity checks");
                    let checks =
                        checks::run(&*self.model, &*self.data, &cfg, &ev, &Registry::default(), run.check_samples)?;
                    if let Some(c) = &checkpoint {
                        c.save_checks(&checks)?;
                    }
                    checks
                }
            }
        } else {
            Vec::new()
        };
        let mut checks = checks;
        let certification = match &self.net {
            Some(net) => {
                let c =
                    eval::certify::certify(&*self.model, net, &*self.data, &ev, &run.certify, run.batch_size, progress)
                        .map_err(|e| match e {
                            // Every sample was attacked; the checkpoint keeps that, and a resumed run
                            // certifies again.
                            Error::Interrupted { .. } => Error::Interrupted {
                                done: ev.samples(),
                                total: ev.samples(),
                                checkpoint: checkpoint.as_ref().map(|c| c.dir().display().to_string()),
                            },
                            e => e,
                        })?;
                checks.push(certify_check(&c));
                Some(c)
            }
            None => None,
        };
        let model = &self.model;
        let bounds = model.bounds();
        let meta = Meta {
            model: ModelInfo {
                source: self.model_source.clone(),
                input: model.input_shape(),
                classes: model.num_classes(),
                parameters: model.parameter_count(),
                preprocessing: run.model_options.preprocess.describe(),
            },
            dataset: DatasetInfo { source: self.data.source().to_string(), samples: ev.samples() },
            seed: run.seed,
            bounds: [bounds.lo, bounds.hi],
            run: RunInfo {
                device: crate::models::device::name(&run.device),
                threads: candle_core::utils::get_num_threads(),
                batch_size: run.batch_size,
                time_s: ev.total_seconds,
                clean_time_s: ev.clean_seconds,
            },
        };
        let mut report = Report::new(&ev, meta);
        report.checks = checks;
        let mut samples = ev.sample_records();
        if let Some(c) = certification {
            report.certified = c.rows;
            for (record, certs) in samples.iter_mut().zip(c.samples) {
                record.certificates = certs;
            }
        }
        let config = self.config;
        report.provenance = Some(Provenance {
            model_files: self.model_files,
            dataset_files: self.dataset_files,
            config_sha256: provenance::config_hash(&config),
            config,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: provenance::git_commit(),
            command: std::env::args().collect(),
            started_at: self.started_at,
            finished_at: provenance::now(),
        });
        let notes = model.notes().into_iter().map(|n| format!("{}: {n}", report.model.source)).collect();
        let examples = ev.adversarial_examples(&*self.data)?;
        let checkpoint = checkpoint.filter(|_| run.shard.is_none());
        Ok(Outcome { samples, examples, report, notes, checkpoint })
    }
}

/// The certificates against the attacks: a sample proven robust cannot have been broken.
fn certify_check(c: &eval::certify::Certification) -> crate::report::Check {
    use crate::report::{Check, Status};
    let name = "certificates-unbroken".to_string();
    match c.contradictions.first() {
        None => Check {
            name,
            status: Status::Pass,
            detail: "no certified sample has an adversarial example from the attacks".into(),
        },
        Some((i, method, eps)) => Check {
            name,
            status: Status::Fail,
            detail: format!(
                "{} certified sample(s) were broken by an attack (first: sample {i}, {method}, eps {eps}): the certificate is unsound; report it with the model",
                c.contradictions.len()
            ),
        },
    }
}

/// The model at `path`, or a shipped one (`None` for the default, or `builtin:<name>`), and its
/// source name.
pub fn load_model(path: Option<&Path>, device: &Device, opts: &LoadOptions) -> Result<(Box<dyn Classifier>, String)> {
    let entry = match path {
        None => &models::zoo::ENTRIES[0],
        Some(p) => match models::zoo::find(p) {
            Some(e) => e,
            None if p.to_str().is_some_and(|s| s.starts_with("builtin:")) => {
                let names: Vec<String> = models::zoo::ENTRIES.iter().map(|e| e.id()).collect();
                return Err(Error::Input {
                    path: p.display().to_string(),
                    message: format!("no such shipped model; the shipped models are {}", names.join(", ")),
                });
            }
            None => return Ok((models::load_classifier(p, DType::F32, device, opts)?, p.display().to_string())),
        },
    };
    let zoo = entry.load(device)?;
    let model: Box<dyn Classifier> = if opts.preprocess.is_identity() {
        Box::new(zoo)
    } else {
        Box::new(Preprocessed::new(zoo, opts.preprocess.clone())?)
    };
    Ok((model, entry.id()))
}

/// Whether a model argument names the default shipped model.
pub fn is_builtin_model(p: &Path) -> bool {
    p.as_os_str() == models::zoo::MNIST_CNN
}

/// The dataset at `path` read with `opts`, or the shipped data (`None`).
pub fn load_dataset(path: Option<&Path>, opts: &OpenOptions) -> Result<ImageSet> {
    Ok(match path {
        Some(p) => datasets::open_with(p, opts)?,
        None => datasets::fit_all(datasets::samples::mnist_test_1k()?, opts)?,
    })
}

/// The dataset at `path` opened for reading batch by batch, or the shipped data (`None`).
pub fn load_source(path: Option<&Path>, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    Ok(match path {
        Some(p) => datasets::open_source(p, opts)?,
        None => Box::new(datasets::fit_all(datasets::samples::mnist_test_1k()?, opts)?),
    })
}

fn read_targets(path: &Path, n: usize) -> Result<Vec<u32>> {
    let err = |message: String| Error::Input { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the targets file ({e})")))?;
    let targets = text
        .split_whitespace()
        .map(|t| t.parse::<u32>().map_err(|_| err(format!("`{t}` is not a class index"))))
        .collect::<Result<Vec<_>>>()?;
    if targets.len() < n {
        return Err(err(format!("{} targets for {n} samples", targets.len())));
    }
    Ok(targets[..n].to_vec())
}
