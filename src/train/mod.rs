//! Training a spec'd architecture on the compiled executor's training mode: plain or adversarial
//! (PGD, FGSM with random start, TRADES), the inner attacks being the evaluator's own modules;
//! per-epoch validation (clean and PGD accuracy on held-out data), checkpoints after every epoch
//! that a resumed run continues, and the same weights for the same seed (whatever the thread
//! count: every reduction runs in a fixed order).

pub mod checkpoint;
pub mod method;
pub mod optim;
pub mod schedule;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use gauntlet_attacks::{Attack, AttackBatch, Norm, Pgd, StepSize, ThreatModel};
use gauntlet_datasets::ImageSet;
use gauntlet_models::{Classifier, Goal, LayerSpec, Loss, ModelSpec, Sequential};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::eval::{batch_tensor, Progress};
use crate::report::write::write_atomic;
use crate::{Error, Result};

pub use method::{Method, Objective};
pub use optim::{Optimizer, OptimizerKind};
pub use schedule::LrSchedule;

/// Everything one training run needs. The fields that decide the weights make up its
/// [`TrainConfig::fingerprint`], which a resumed run must match.
pub struct TrainConfig {
    pub spec: ModelSpec,
    /// Where the spec was read (for messages).
    pub spec_path: PathBuf,
    pub train: ImageSet,
    pub validation: ImageSet,
    /// How the validation data was chosen (for the card): a held-out count or a path.
    pub validation_source: String,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// The peak learning rate.
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub schedule: LrSchedule,
    pub seed: u64,
    pub objective: Objective,
    /// Epochs over which ε rises linearly from 0 (0: the full ε from the start).
    pub eps_ramp: f64,
    /// PGD steps of the per-epoch validation attack (at the full ε; 0 skips it).
    pub val_steps: usize,
    /// The folder that keeps the state after every epoch.
    pub checkpoint: Option<PathBuf>,
    pub resume: bool,
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub loss: f64,
    /// Accuracy on the inputs trained on (adversarial ones for pgd and fgsm-rs, clean for
    /// standard and trades).
    pub train_accuracy: f64,
    /// The training budget at the end of the epoch (after the ramp).
    pub eps: f64,
    pub validation_clean: f64,
    /// PGD accuracy on the validation data at the full ε (absent without a validation attack).
    pub validation_robust: Option<f64>,
    pub seconds: f64,
}

/// A finished run: the spec naming its weights, the weights, and the epochs' records.
pub struct Trained {
    pub spec: ModelSpec,
    pub weights: HashMap<String, Tensor>,
    pub history: Vec<EpochRecord>,
    /// Training time of all epochs, resumed runs included.
    pub seconds: f64,
}

/// The names of the spec's trainable tensors, per layer with weights: (weight, bias).
fn tensor_names(spec: &ModelSpec) -> Vec<(String, String)> {
    spec.layers
        .iter()
        .filter_map(|l| match l {
            LayerSpec::Conv2d { weight, .. } | LayerSpec::Linear { weight, .. } => {
                Some((format!("{weight}.weight"), format!("{weight}.bias")))
            }
            _ => None,
        })
        .collect()
}

/// The validation samples held out when none are named: a tenth of the `total` training
/// samples, at most 1,000 and at least 1.
pub fn default_holdout(total: usize) -> usize {
    (total / 10).clamp(1, 1000)
}

/// Splits `data` into training data and `n` held-out samples chosen by a permutation from `seed`.
pub fn hold_out(data: ImageSet, n: usize, seed: u64) -> Result<(ImageSet, ImageSet)> {
    let total = data.labels.len();
    if n == 0 || n >= total {
        return Err(Error::Config(format!("--holdout {n}: must be at least 1 and below the {total} training samples")));
    }
    let mut order: Vec<usize> = (0..total).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x0068_6f6c_646f_7574));
    let (keep, held) = order.split_at(total - n);
    let subset = |idx: &[usize], what: &str| -> Result<ImageSet> {
        let mut sorted = idx.to_vec();
        sorted.sort_unstable();
        let images = sorted.iter().flat_map(|&i| data.image(i).iter().copied()).collect();
        let labels = sorted.iter().map(|&i| data.labels[i]).collect();
        Ok(ImageSet::new(format!("{} ({what})", data.source), data.shape, images, labels)?)
    };
    Ok((subset(keep, "training part")?, subset(held, "held out")?))
}

impl TrainConfig {
    /// The settings that decide the weights, as a JSON object (a resumed run must match it).
    pub fn fingerprint(&self) -> serde_json::Value {
        let data = |d: &ImageSet| {
            let mut bytes: Vec<u8> = d.images.iter().flat_map(|v| v.to_le_bytes()).collect();
            bytes.extend(d.labels.iter().flat_map(|v| v.to_le_bytes()));
            crate::report::provenance::sha256_hex(&bytes)
        };
        serde_json::json!({
            "spec": toml::to_string(&self.spec).unwrap_or_default(),
            "training_data": data(&self.train),
            "validation_data": data(&self.validation),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "lr_schedule": self.schedule,
            "seed": self.seed,
            "objective": self.objective,
            "eps_ramp": self.eps_ramp,
            "validation_steps": self.val_steps,
        })
    }

    fn check(&self) -> Result<()> {
        if self.batch_size == 0 || self.epochs == 0 {
            return Err(Error::Config("--batch-size and --epochs must be at least 1".into()));
        }
        let o = &self.objective;
        if !(o.eps.is_finite() && o.eps >= 0.0) || (o.method != Method::Standard && o.eps <= 0.0) {
            return Err(Error::Config(format!("--eps {}: adversarial training needs a positive budget", o.eps)));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Config(format!("--lr {}: must be a positive number", self.lr)));
        }
        if !(o.rel_step.is_finite() && o.rel_step > 0.0 && o.beta.is_finite() && o.beta >= 0.0) {
            return Err(Error::Config("--step must be positive and --beta at least 0".into()));
        }
        if !(self.eps_ramp.is_finite() && self.eps_ramp >= 0.0) {
            return Err(Error::Config(format!("--eps-ramp {}: must be 0 or more epochs", self.eps_ramp)));
        }
        for d in [&self.train, &self.validation] {
            d.validate(self.spec.input, self.spec.classes)?;
        }
        Ok(())
    }

    /// Trains; `on_epoch` sees each finished epoch (after its checkpoint is written).
    pub fn run(&self, progress: &dyn Progress, on_epoch: &mut dyn FnMut(&EpochRecord)) -> Result<Trained> {
        self.check()?;
        let names = tensor_names(&self.spec);
        let init = self.spec.init_weights(self.seed)?;
        let mut model = self.spec.build(&init, &self.spec_path, DType::F32, &Device::Cpu)?;
        let mut params = model.parameters()?;
        let biased = model.has_bias();
        let lens: Vec<usize> = params.iter().flat_map(|p| [p.weight.len(), p.bias.len()]).collect();
        let mut opt = Optimizer::new(self.optimizer, self.momentum, self.weight_decay, &lens);
        let mut history = Vec::new();
        let fingerprint = self.fingerprint();
        if self.resume {
            if let Some(dir) = &self.checkpoint {
                if let Some(state) = checkpoint::load(dir, &fingerprint, &params, &opt)? {
                    (params, opt, history) = (state.params, state.optimizer, state.history);
                    model.set_parameters(&params)?;
                }
            }
        }
        let n = self.train.labels.len();
        let per_epoch = n.div_ceil(self.batch_size);
        let total_steps = per_epoch * self.epochs;
        let decay: Vec<bool> = lens.iter().enumerate().map(|(i, _)| i % 2 == 0).collect();
        for epoch in history.len() + 1..=self.epochs {
            let start = Instant::now();
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(self.seed.wrapping_add(epoch as u64 * 0x9e37)));
            progress.start(n as u64);
            let (mut loss_sum, mut correct, mut eps_now) = (0f64, 0usize, 0f64);
            for (b, chunk) in order.chunks(self.batch_size).enumerate() {
                if progress.cancelled() {
                    progress.finish();
                    return Err(Error::TrainingInterrupted {
                        epoch,
                        checkpoint: self.checkpoint.as_ref().filter(|_| epoch > 1).map(|d| d.display().to_string()),
                    });
                }
                let step = (epoch - 1) * per_epoch + b;
                eps_now = schedule::ramped_eps(self.objective.eps, self.eps_ramp, step, per_epoch);
                let lr = self.schedule.rate(self.lr, step, total_steps);
                let x0 = batch_tensor(&self.train, chunk, &Device::Cpu)?;
                let labels: Vec<u32> = chunk.iter().map(|&i| self.train.labels[i]).collect();
                let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
                let prepared =
                    self.objective.prepare(&model, &x0, &labels, &ids, (self.seed, epoch as u64), eps_now)?;
                let mut loss = f64::NAN;
                let (logits, mut grads) = model.parameter_grads(&prepared.x, |z| {
                    let (l, g) = prepared.loss_grad(z, &labels, self.objective.beta);
                    loss = l;
                    g
                })?;
                if !loss.is_finite() {
                    return Err(Error::Config(format!(
                        "training diverged in epoch {epoch}, batch {} (loss {loss}); lower --lr",
                        b + 1
                    )));
                }
                for (g, &has) in grads.iter_mut().zip(&biased) {
                    if !has {
                        g.bias.fill(0.0);
                    }
                }
                {
                    let mut ps: Vec<&mut [f32]> =
                        params.iter_mut().flat_map(|p| [p.weight.as_mut_slice(), p.bias.as_mut_slice()]).collect();
                    let gs: Vec<&[f32]> = grads.iter().flat_map(|g| [g.weight.as_slice(), g.bias.as_slice()]).collect();
                    opt.step(&mut ps, &gs, &decay, lr);
                }
                model.set_parameters(&params)?;
                loss_sum += loss * chunk.len() as f64;
                let k = self.spec.classes;
                correct += logits.chunks(k).zip(&labels).filter(|(r, &y)| argmax(r) == y as usize).count();
                progress.advance(chunk.len() as u64, &format!("epoch {epoch}/{}", self.epochs));
            }
            progress.finish();
            progress.stage("validating");
            let (clean, robust) = validate(&model, &self.validation, self.objective.eps, self.val_steps, self.seed)?;
            let record = EpochRecord {
                epoch,
                loss: loss_sum / n as f64,
                train_accuracy: correct as f64 / n as f64,
                eps: eps_now,
                validation_clean: clean,
                validation_robust: robust,
                seconds: start.elapsed().as_secs_f64(),
            };
            history.push(record.clone());
            if let Some(dir) = &self.checkpoint {
                let state =
                    checkpoint::State { params: params.clone(), optimizer: opt.clone(), history: history.clone() };
                checkpoint::save(dir, &fingerprint, &state)?;
            }
            on_epoch(&record);
        }
        let mut weights = HashMap::new();
        for ((w, b), p) in names.iter().zip(&params) {
            let (wt, bt) = (&init[w], &init[b]);
            weights.insert(w.clone(), Tensor::from_slice(&p.weight, wt.shape(), &Device::Cpu)?);
            weights.insert(b.clone(), Tensor::from_slice(&p.bias, bt.shape(), &Device::Cpu)?);
        }
        let mut spec = self.spec.clone();
        for layer in &mut spec.layers {
            // Shapes now come from the weights.
            if let LayerSpec::Conv2d { out, kernel, .. } = layer {
                (*out, *kernel) = (None, None);
            } else if let LayerSpec::Linear { out, .. } = layer {
                *out = None;
            }
        }
        let seconds = history.iter().map(|r| r.seconds).sum();
        Ok(Trained { spec, weights, history, seconds })
    }
}

fn argmax(r: &[f32]) -> usize {
    r.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// Clean accuracy and PGD accuracy (L∞ ε, `steps` steps of 2.5·ε/steps, random start, each
/// sample stopping at its first success) of `model` on `data`; every adversarial example is
/// projected onto the budget exactly and re-classified before it counts.
pub fn validate(model: &Sequential, data: &ImageSet, eps: f64, steps: usize, seed: u64) -> Result<(f64, Option<f64>)> {
    let n = data.labels.len();
    let idx: Vec<usize> = (0..n).collect();
    let attack = (steps > 0 && eps > 0.0).then(|| Pgd {
        steps,
        step: StepSize::Relative(2.5 / steps as f64),
        restarts: 1,
        random_start: true,
        loss: Loss::CrossEntropy,
        early_stop: true,
    });
    let (mut clean, mut robust) = (0usize, 0usize);
    for chunk in idx.chunks(500) {
        let x0 = batch_tensor(data, chunk, &Device::Cpu)?;
        let labels: Vec<u32> = chunk.iter().map(|&i| data.labels[i]).collect();
        let k = model.num_classes();
        let z = model.logits(&x0)?.flatten_all()?.to_vec1::<f32>()?;
        let right: Vec<bool> = z.chunks(k).zip(&labels).map(|(r, &y)| argmax(r) == y as usize).collect();
        clean += right.iter().filter(|&&r| r).count();
        let Some(attack) = &attack else { continue };
        let threat = ThreatModel::new(Norm::Linf, eps, model.bounds())?;
        let goal = Goal::untargeted(labels.clone());
        let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
        let batch = AttackBatch { x0: &x0, goal: &goal, ids: &ids, seed, stream: u64::MAX };
        let out = attack.run(model, &batch, &threat)?;
        let clean_rows = x0.flatten_all()?.to_vec1::<f32>()?;
        let mut adv = out.x_adv.flatten_all()?.to_vec1::<f32>()?;
        let per = clean_rows.len() / chunk.len();
        for (c, a) in clean_rows.chunks(per).zip(adv.chunks_mut(per)) {
            threat.project_exact(c, a);
        }
        let za = model.logits(&Tensor::from_vec(adv, x0.shape(), &Device::Cpu)?)?.flatten_all()?.to_vec1::<f32>()?;
        robust += za.chunks(k).zip(&labels).zip(&right).filter(|((r, &y), &ok)| ok && argmax(r) == y as usize).count();
    }
    let f = |c: usize| c as f64 / n.max(1) as f64;
    Ok((f(clean), attack.map(|_| f(robust))))
}

impl Trained {
    /// Writes the spec to `out` (.toml) and the weights beside it (.safetensors), each atomically.
    pub fn write(&self, out: &Path) -> Result<(PathBuf, PathBuf)> {
        let weights_path = out.with_extension("safetensors");
        let file_name = weights_path
            .file_name()
            .ok_or_else(|| Error::Config(format!("{}: --out has no file name", out.display())))?
            .to_string_lossy()
            .into_owned();
        let bytes = checkpoint::safetensors_bytes(&self.weights, out)?;
        let mut spec = self.spec.clone();
        spec.weights = Some(file_name);
        let toml = toml::to_string(&spec).map_err(|e| Error::Output {
            path: out.display().to_string(),
            message: format!("cannot serialize the spec: {e}"),
        })?;
        write_atomic(&weights_path, &bytes)?;
        write_atomic(out, toml.as_bytes())?;
        Ok((out.to_path_buf(), weights_path))
    }
}
