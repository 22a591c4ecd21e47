//! The integrity checks fire on models built to trip them, and stay quiet on a normal one.

use candle_core::{Device, Tensor};
use common::data;
use gauntlet::attacks::{Attack, AttackBatch, AttackOutput, Cost, Params, Registry, ThreatModel};
use gauntlet::checks;
use gauntlet::eval::{evaluate, Broken, EvalConfig, Evaluation, Silent};
use gauntlet::models::{zoo, Classifier, Loss, Sequential};
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

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks.iter().find(|c| c.name == name).unwrap()
}

/// `within_budget`: an evaluation whose counted perturbation exceeds its ε FAILs, with the ratio
/// in the detail; the same evaluation untouched passes with its true largest ratio.
#[test]
fn within_budget_fails_on_a_counted_perturbation_beyond_its_budget() {
    let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
    let d = data(40);
    let cfg = config(&["fgsm", "pgd:steps=5"], &[0.1, 0.2]);
    let ev = evaluate(&model, &d, &cfg, &Silent).unwrap();
    let registry = Registry::default();
    let ratio = |ev: &Evaluation| {
        ev.attacks
            .iter()
            .flat_map(|r| r.broken.iter().flatten())
            .map(|b| b.norm / ev.eps[b.eps_index])
            .fold(0.0, f64::max)
    };
    let honest = checks::run(&model, &d, &cfg, &ev, &registry, 10).unwrap();
    let c = find(&honest, "within_budget");
    assert_eq!(c.status, Status::Pass, "{}", c.detail);
    assert!(ratio(&ev) <= 1.0 + 1e-6 && ratio(&ev) > 0.5, "{}", ratio(&ev));
    assert!(c.detail.contains(&format!("largest ‖δ‖/ε {:.6}", ratio(&ev))), "{}", c.detail);

    // PGD's first broken sample, recorded as 1.5 ε away from its clean image.
    let mut forged = ev.clone();
    let (i, eps) = {
        let (i, b) = forged.attacks[1].broken.iter().enumerate().find_map(|(i, b)| b.as_ref().map(|b| (i, b))).unwrap();
        (i, forged.eps[b.eps_index])
    };
    let b = forged.attacks[1].broken[i].as_mut().unwrap();
    b.norm = 1.5 * eps;
    b.linf = 1.5 * eps;
    let checks = checks::run(&model, &d, &cfg, &forged, &registry, 10).unwrap();
    let c = find(&checks, "within_budget");
    assert_eq!(c.status, Status::Fail, "{}", c.detail);
    assert!(c.detail.contains("largest ‖δ‖/ε 1.500000") && c.detail.contains("exceeds its budget"), "{}", c.detail);
}

/// `within_budget` at a tiny ε: PGD's outputs, exact up to the f32 rounding of x + δ, are not
/// counted as outside the ball (that rounding is 6·10⁻⁴ ε at ε = 10⁻⁴).
#[test]
fn within_budget_allows_the_rounding_of_a_tiny_budget() {
    let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
    let d = data(20);
    let cfg = config(&["pgd:steps=3"], &[1e-4]);
    let ev = evaluate(&model, &d, &cfg, &Silent).unwrap();
    let checks = checks::run(&model, &d, &cfg, &ev, &Registry::default(), 10).unwrap();
    let c = find(&checks, "within_budget");
    assert_eq!(c.status, Status::Pass, "{}", c.detail);
}

/// An attack that returns the inverted image, far outside every ε-ball.
#[derive(Debug)]
struct Inverter;

impl Attack for Inverter {
    fn name(&self) -> &str {
        "inverter"
    }
    fn params(&self) -> String {
        String::new()
    }
    fn run(
        &self,
        _m: &dyn Classifier,
        b: &AttackBatch<'_>,
        _t: &ThreatModel,
    ) -> gauntlet::attacks::Result<AttackOutput> {
        let n = b.len();
        Ok(AttackOutput {
            x_adv: b.x0.affine(-1.0, 1.0)?,
            steps: vec![Some(1); n],
            reached: vec![false; n],
            cost: Cost::default(),
        })
    }
}

/// `within_budget`: an attack whose outputs the evaluator had to project is named in a WARN with
/// the number of rows it returned outside the ball — every row it was handed.
#[test]
fn within_budget_warns_about_an_attack_that_leaves_the_ball() {
    let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
    let d = data(30);
    let mut cfg = config(&[], &[0.05, 0.1]);
    cfg.attacks = vec![Box::new(Inverter)];
    let ev = evaluate(&model, &d, &cfg, &Silent).unwrap();
    // Handed: every clean-correct sample at the first ε, then those it did not break there.
    let n = ev.samples();
    let correct = (0..n).filter(|&i| ev.clean_pred[i] == ev.labels[i]).count();
    let survivors =
        (0..n).filter(|&i| ev.correct(i) && ev.attacks[0].broken[i].as_ref().is_none_or(|b| b.eps_index > 0)).count();
    let handed = correct + survivors;
    let checks = checks::run(&model, &d, &cfg, &ev, &Registry::default(), 10).unwrap();
    let c = find(&checks, "within_budget");
    assert_eq!(c.status, Status::Warn, "{}", c.detail);
    assert!(
        c.detail.contains(&format!("inverter returned {handed} points outside the ε-ball or bounds")),
        "{handed}: {}",
        c.detail
    );
    // Whatever it broke after projection is within budget.
    assert!(!c.detail.contains("exceeds its budget"), "{}", c.detail);
}

/// `eps_monotone`: a record in which a sample resists the larger budget but falls to the smaller
/// one must FAIL. The evaluator always sorts the budgets ascending; a hand-built evaluation with
/// budgets in descending order expresses that record; the check walks the budgets by value.
#[test]
fn eps_monotone_fails_on_a_sample_robust_only_at_the_larger_budget() {
    let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
    let d = data(20);
    let cfg = config(&["fgsm"], &[0.05, 0.3]);
    let mut ev = evaluate(&model, &d, &cfg, &Silent).unwrap();
    // Budgets as [0.3, 0.05]: a sample first broken at index 1 is broken at ε 0.05 but not at 0.3.
    ev.eps = vec![0.3, 0.05];
    let i = (0..ev.samples()).find(|&i| ev.correct(i)).unwrap();
    ev.attacks[0].broken = vec![None; ev.samples()];
    ev.attacks[0].broken[i] = Some(Broken {
        eps_index: 1,
        adv_pred: (ev.labels[i] + 1) % 10,
        linf: 0.05,
        l2: 0.5,
        step: Some(1),
        norm: 0.05,
    });
    let checks = checks::run(&model, &d, &cfg, &ev, &Registry::default(), 5).unwrap();
    let c = find(&checks, "eps_monotone");
    assert_eq!(c.status, Status::Fail, "{}", c.detail);
}

/// L∞ steps of ε/8 along the gradient's sign from the clean image: after 2 steps it has moved at
/// most ε/4, so doubling the steps breaks many more samples.
#[derive(Debug)]
struct Creep {
    steps: usize,
}

impl Attack for Creep {
    fn name(&self) -> &str {
        "creep"
    }
    fn params(&self) -> String {
        format!("steps={}", self.steps)
    }
    fn strengthened(&self) -> Option<Box<dyn Attack>> {
        Some(Box::new(Creep { steps: 2 * self.steps }))
    }
    fn run(&self, m: &dyn Classifier, b: &AttackBatch<'_>, t: &ThreatModel) -> gauntlet::attacks::Result<AttackOutput> {
        let mut x = b.x0.clone();
        for _ in 0..self.steps {
            let lg = m.loss_and_grad(&x, b.goal, Loss::CrossEntropy)?;
            x = t.project(b.x0, &(x + t.ascent(&lg.grad, t.eps / 8.0)?)?)?;
        }
        let n = b.len();
        let cost = Cost { forwards: 0, gradients: (n * self.steps) as u64 };
        Ok(AttackOutput { x_adv: x, steps: vec![None; n], reached: vec![false; n], cost })
    }
}

/// `more_iterations`: a user attack that has not converged at its default steps FAILs, and the
/// count of samples the doubled attack breaks matches a separate evaluation of that attack.
#[test]
fn more_iterations_fails_on_an_attack_that_has_not_converged() {
    let mut registry = Registry::default();
    registry.register("creep", "sign-gradient steps of ε/8 (test attack)", |mut p: Params| {
        let steps = p.take_usize("steps")?.unwrap_or(2);
        p.finish(&["steps"])?;
        Ok(Box::new(Creep { steps }))
    });
    let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
    let d = data(100);
    let eps = 0.3;
    let mut cfg = config(&[], &[eps]);
    cfg.attacks = vec![registry.create("creep").unwrap()];
    let ev = evaluate(&model, &d, &cfg, &Silent).unwrap();
    let checks = checks::run(&model, &d, &cfg, &ev, &registry, 60).unwrap();
    let c = find(&checks, "more_iterations");
    assert_eq!(c.status, Status::Fail, "{}", c.detail);
    assert!(c.detail.starts_with("creep:steps=4 at ε 0.3"), "{}", c.detail);

    // The same numbers by hand: the doubled attack (deterministic) on every sample, counted on the
    // first 60 samples the main run left robust.
    let mut cfg4 = config(&[], &[eps]);
    cfg4.attacks = vec![registry.create("creep:steps=4").unwrap()];
    let ev4 = evaluate(&model, &d, &cfg4, &Silent).unwrap();
    let robust: Vec<usize> = (0..ev.samples()).filter(|&i| ev.robust_all(i, 0)).collect();
    let subset = &robust[..robust.len().min(60)];
    let newly = subset.iter().filter(|&&i| ev4.attacks[0].broken[i].is_some()).count();
    assert!(c.detail.contains(&format!("on {} of the {} samples robust", subset.len(), robust.len())), "{}", c.detail);
    assert!(c.detail.contains(&format!(": {newly} more broken")), "{newly}: {}", c.detail);
    let change = newly as f64 / subset.len() as f64 * robust.len() as f64 / ev.samples() as f64;
    assert!(change > checks::rules::MORE_ITERATIONS_FAIL, "change {change}");
    assert!(c.detail.contains(&format!("(−{:.2} pp)", change * 100.0)), "{change}: {}", c.detail);
}
