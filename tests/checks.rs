//! The integrity checks fire on models built to trip them, and stay quiet on a normal one.

use candle_core::{Device, Tensor};
use common::data;
use gauntlet::attacks::Registry;
use gauntlet::checks;
use gauntlet::eval::{evaluate, EvalConfig, Evaluation, Silent};
use gauntlet::models::{zoo, Classifier, Sequential};
use gauntlet::report::{Check, Status};

mod common;

fn config(attacks: &[&str], eps: &[f64]) -> EvalConfig {
    common::config(attacks, eps, 3, 100)
}

/// Evaluates and checks; returns the evaluation and the checks by name.
fn checked(model: &dyn Classifier, n: usize, attacks: &[&str], eps: &[f64]) -> (Evaluation, Vec<Check>) {
    let d = data(n);
    let cfg = config(attacks, eps);
    let ev = evaluate(model, &d, &cfg, &Silent).unwrap();
    let checks = checks::run(model, &d, &cfg, &ev, &Registry::default(), 60).unwrap();
    assert_eq!(checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), checks::NAMES);
    (ev, checks)
}

fn status(checks: &[Check], name: &str) -> Status {
    checks.iter().find(|c| c.name == name).unwrap().status
}

fn robust_accuracy(ev: &Evaluation, attack: usize, k: usize) -> f64 {
    (0..ev.samples()).filter(|&i| ev.robust(attack, i, k)).count() as f64 / ev.samples() as f64
}

/// The shipped model followed by a softmax at temperature 1/`scale`: with a large scale the
/// probabilities saturate to exactly 0 and 1 in f32 and cross-entropy has no gradient.
struct SoftmaxOutput {
    inner: Sequential,
    scale: f64,
}

/// The shipped model behind an input quantizer to `levels` grey levels, with no gradient through
/// the rounding (as a non-differentiable preprocessing step leaves it).
struct Quantized {
    inner: Sequential,
    levels: f64,
}

impl Classifier for SoftmaxOutput {
    fn logits(&self, x: &Tensor) -> gauntlet::models::Result<Tensor> {
        let z = (self.inner.logits(x)? * self.scale)?;
        Ok(candle_nn::ops::softmax(&z, candle_core::D::Minus1)?)
    }
    fn input_shape(&self) -> [usize; 3] {
        self.inner.input_shape()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
}

impl Classifier for Quantized {
    fn logits(&self, x: &Tensor) -> gauntlet::models::Result<Tensor> {
        let q = ((x.detach() * (self.levels - 1.0))?.round()? / (self.levels - 1.0))?;
        // Keeps the input in the graph with a derivative of exactly zero.
        let q = (q + x.broadcast_sub(x)?)?;
        self.inner.logits(&q)
    }
    fn input_shape(&self) -> [usize; 3] {
        self.inner.input_shape()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
}

#[test]
fn a_normal_model_passes_every_check() {
    let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
    let (_, checks) = checked(&model, 200, &["fgsm", "pgd"], &[0.05, 0.1, 0.2]);
    for c in &checks {
        assert_eq!(c.status, Status::Pass, "{}: {}", c.name, c.detail);
    }
}

#[test]
fn a_saturated_softmax_fools_pgd_but_not_the_checks() {
    let plain = zoo::mnist_cnn(&Device::Cpu).unwrap();
    let masked = SoftmaxOutput { inner: zoo::mnist_cnn(&Device::Cpu).unwrap(), scale: 100.0 };
    let eps = [0.1, 0.2];
    let (ev_plain, _) = checked(&plain, 100, &["fgsm", "pgd"], &eps);
    let (ev, checks) = checked(&masked, 100, &["fgsm", "pgd"], &eps);
    // Same predictions, so the same clean accuracy; but PGD, seeing no gradient, calls it robust.
    assert_eq!(ev.clean_pred, ev_plain.clean_pred);
    let (fooled, truth) = (robust_accuracy(&ev, 1, 1), robust_accuracy(&ev_plain, 1, 1));
    assert!(fooled > truth + 0.3, "PGD at ε 0.2: masked {fooled} vs plain {truth}");
    for name in ["outputs_are_logits", "gradients", "unbounded_budget"] {
        assert_eq!(status(&checks, name), Status::Fail, "{name}: {checks:#?}");
    }
}

#[test]
fn input_quantization_without_gradient_is_flagged() {
    let model = Quantized { inner: zoo::mnist_cnn(&Device::Cpu).unwrap(), levels: 4.0 };
    let (_, checks) = checked(&model, 100, &["fgsm", "pgd"], &[0.1, 0.2]);
    assert_eq!(status(&checks, "outputs_are_logits"), Status::Pass);
    for name in ["gradients", "unbounded_budget", "gradient_free_vs_gradient"] {
        assert_eq!(status(&checks, name), Status::Fail, "{name}: {checks:#?}");
    }
}
