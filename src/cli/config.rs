//! Raw arguments → a validated [`RunConfig`]: every evaluation option is parsed and checked here,
//! once, before anything is loaded.

use std::path::PathBuf;

use crate::attacks::{parse_number, Norm, Registry};
use crate::datasets::{self, DataLayout, OpenOptions, Resize};
use crate::eval::normalize_eps;
use crate::models::preprocess::{ChannelOrder, Layout, Preprocess};
use crate::models::LoadOptions;
use crate::run::is_builtin_model;
use crate::run::{RunConfig, Target};
use anyhow::{bail, Context};

use super::{EvalOpts, GraphOpts, Preset, Protocol};

/// Sets the worker thread count before the first tensor operation starts the pool.
pub fn set_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(t) = threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    Ok(())
}

impl GraphOpts {
    /// The loader options these flags ask for.
    pub fn load_options(&self) -> anyhow::Result<LoadOptions> {
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
        Ok(LoadOptions {
            input_name: self.input_name.clone(),
            output_name: self.output_name.clone(),
            input_shape,
            keep_softmax: self.keep_softmax,
            node_by_node: self.node_by_node,
            ..Default::default()
        })
    }
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

/// Parses a comma-separated list of budgets.
pub fn parse_eps_list(text: &str) -> anyhow::Result<Vec<f64>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_number(s).with_context(|| format!("--eps: `{s}` is not a number (use e.g. 0.1,0.2,8/255)")))
        .collect()
}

impl EvalOpts {
    /// Validates every evaluation option and resolves it into the run's configuration
    /// (model and adversarial-example count set by the caller). Nothing is loaded yet.
    pub fn run_config(&self, model: Option<PathBuf>, keep: usize) -> anyhow::Result<RunConfig> {
        set_threads(self.threads)?;
        let norm: Norm = self.norm.parse()?;
        let eps = match &self.eps {
            Some(text) => parse_eps_list(text)?,
            None => match norm {
                Norm::Linf => vec![0.05, 0.1, 0.2, 0.3],
                Norm::L2 => vec![0.5, 1.0, 1.5, 2.0],
            },
        };
        let (specs, cascade) = match self.preset {
            Some(p) => {
                let (list, cascade) = p.attacks();
                (list.iter().map(|s| s.to_string()).collect(), cascade)
            }
            None if self.attacks.is_empty() => (vec!["fgsm".to_string(), "pgd".to_string()], false),
            None => (self.attacks.clone(), false),
        };
        let registry = Registry::default();
        let attacks = specs.iter().map(|s| registry.create(s)).collect::<Result<Vec<_>, _>>()?;
        let target = match (&self.target, &self.targets) {
            (Some(text), _) => Some(Target::parse(text)?),
            (None, Some(path)) => Some(Target::File(path.clone())),
            (None, None) => None,
        };
        let (device, warning) = crate::models::device::resolve(&self.device)?;
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        let config = RunConfig {
            model: model.filter(|m| !is_builtin_model(m)),
            dataset: self.dataset.clone(),
            limit: self.limit,
            attacks,
            cascade: self.protocol.map_or(cascade, |p| p == Protocol::Cascade),
            norm,
            eps: normalize_eps(&eps).context("--eps")?,
            target,
            seed: self.seed,
            batch_size: self.batch_size,
            device,
            checks: !self.no_checks,
            certify: match &self.certify {
                Some(text) => text
                    .split(',')
                    .filter(|m| !m.trim().is_empty())
                    .map(crate::eval::certify::parse_method)
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            },
            check_samples: self.check_samples,
            keep,
            model_options: LoadOptions { preprocess: self.preprocess()?, ..self.graph.load_options()? },
            data_options: self.data_options()?,
            shard: None,
            checkpoint: None,
            resume: false,
        };
        config.check()?;
        Ok(config)
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
