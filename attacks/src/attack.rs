//! The plug-in surface: the [`Attack`] trait, what it receives and what it returns.

use std::fmt::Debug;

use candle_core::Tensor;
use gauntlet_models::{Classifier, Goal, Loss};

use crate::threat::{NoiseKey, ThreatModel};
use crate::{AttackError, Result};

/// A batch handed to an attack. All rows are samples the model classifies correctly (or, for a
/// targeted goal, not yet as the target).
#[derive(Debug, Clone, Copy)]
pub struct AttackBatch<'a> {
    /// Clean inputs (n, C, H, W) on the model's device.
    pub x0: &'a Tensor,
    pub goal: &'a Goal,
    /// Dataset indices of the rows: they key each sample's random stream.
    pub ids: &'a [u64],
    /// Seed and stream (attack × budget) of the random numbers; add the restart to get a key.
    pub seed: u64,
    pub stream: u64,
}

impl AttackBatch<'_> {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn noise_key(&self, restart: u64) -> NoiseKey {
        NoiseKey { seed: self.seed, stream: self.stream, restart }
    }
}

/// Work done, counted in single-sample passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Forward-only passes.
    pub forwards: u64,
    /// Forward + input-gradient passes.
    pub gradients: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.forwards += o.forwards;
        self.gradients += o.gradients;
    }
}

/// What an attack returns. Nothing here is trusted: the evaluator re-projects, re-checks and
/// re-classifies every row.
#[derive(Debug, Clone)]
pub struct AttackOutput {
    /// Candidate adversarial inputs (n, C, H, W), any device.
    pub x_adv: Tensor,
    /// Per row, the iteration that produced it (1 for single-step attacks), if known.
    pub steps: Vec<Option<u32>>,
    /// Per row, whether the attack itself saw the goal reached (false when it does not check).
    pub reached: Vec<bool>,
    pub cost: Cost,
}

/// An adversarial attack. The model is passed in, not owned; the threat model fixes norm and ε.
pub trait Attack: Send + Sync + Debug {
    /// The registry name, as typed on the command line and written in reports.
    fn name(&self) -> &str;

    /// The resolved parameters, `key=value` comma-separated, for reports.
    fn params(&self) -> String;

    fn needs_gradients(&self) -> bool {
        true
    }

    /// A minimal-norm attack searches for each sample's smallest adversarial perturbation instead
    /// of working within a budget. The evaluator runs it once per sample, with a threat model whose
    /// ε is the largest perturbation the bounds allow (L∞: hi − lo; L2: (hi − lo)·√dim), and counts a
    /// sample broken at every budget its perturbation fits in. It returns, per row, the smallest
    /// adversarial input it found (or the clean input when it found none).
    fn minimal_norm(&self) -> bool {
        false
    }

    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput>;
}

/// `key=value` parameters of an attack, consumed by its constructor; leftovers are an error.
#[derive(Debug, Clone, Default)]
pub struct Params {
    attack: String,
    entries: Vec<(String, String)>,
}

impl Params {
    /// Parses `k=v,k=v` (an empty string gives no parameters).
    pub fn parse(attack: &str, text: &str) -> Result<Self> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(AttackError::Param {
                    attack: attack.into(),
                    message: format!("`{part}` is not key=value"),
                });
            };
            let k = k.trim().to_ascii_lowercase();
            if entries.iter().any(|(e, _)| *e == k) {
                return Err(AttackError::Param { attack: attack.into(), message: format!("`{k}` is given twice") });
            }
            entries.push((k, v.trim().to_string()));
        }
        Ok(Params { attack: attack.into(), entries })
    }

    fn take_raw(&mut self, key: &str) -> Option<String> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    fn err(&self, message: String) -> AttackError {
        AttackError::Param { attack: self.attack.clone(), message }
    }

    /// A number; fractions such as `2/255` are accepted.
    pub fn take_f64(&mut self, key: &str) -> Result<Option<f64>> {
        match self.take_raw(key) {
            None => Ok(None),
            Some(v) => parse_number(&v)
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}={v}` is not a number"))),
        }
    }

    pub fn take_usize(&mut self, key: &str) -> Result<Option<usize>> {
        match self.take_raw(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| self.err(format!("`{key}={v}` is not a whole number"))),
        }
    }

    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        match self.take_raw(key).as_deref() {
            None => Ok(None),
            Some("true" | "yes" | "1" | "on") => Ok(Some(true)),
            Some("false" | "no" | "0" | "off") => Ok(Some(false)),
            Some(v) => Err(self.err(format!("`{key}={v}` is not true or false"))),
        }
    }

    pub fn take_loss(&mut self) -> Result<Option<Loss>> {
        match self.take_raw("loss").as_deref() {
            None => Ok(None),
            Some("ce" | "cross-entropy" | "xent") => Ok(Some(Loss::CrossEntropy)),
            Some("margin" | "cw") => Ok(Some(Loss::Margin)),
            Some("dlr") => Ok(Some(Loss::Dlr)),
            Some(v) => Err(self.err(format!("`loss={v}` is unknown; use ce, margin or dlr"))),
        }
    }

    /// Fails on any key the constructor did not take, listing the keys it knows.
    pub fn finish(self, known: &[&str]) -> Result<()> {
        match self.entries.first() {
            None => Ok(()),
            Some((k, _)) => Err(self.err(format!("unknown parameter `{k}`; known: {}", known.join(", ")))),
        }
    }
}

/// Parses `0.3`, `8/255` or `1e-2`.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    match s.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (b != 0.0).then(|| a / b)
        }
        None => s.parse().ok(),
    }
}

pub(crate) fn loss_name(loss: Loss) -> &'static str {
    loss.name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_reject_unknown_keys() {
        let mut p = Params::parse("pgd", "steps=10, step=2/255,random_start=false").unwrap();
        assert_eq!(p.take_usize("steps").unwrap(), Some(10));
        assert!((p.take_f64("step").unwrap().unwrap() - 2.0 / 255.0).abs() < 1e-12);
        assert_eq!(p.take_bool("random_start").unwrap(), Some(false));
        p.finish(&[]).unwrap();
        let p = Params::parse("pgd", "stepz=3").unwrap();
        let e = p.finish(&["steps"]).unwrap_err().to_string();
        assert!(e.contains("unknown parameter `stepz`") && e.contains("steps"), "{e}");
        assert!(Params::parse("pgd", "steps").is_err());
        assert!(Params::parse("pgd", "steps=1,steps=2").is_err());
        let mut p = Params::parse("pgd", "steps=x").unwrap();
        assert!(p.take_usize("steps").is_err());
    }

    #[test]
    fn numbers_accept_fractions() {
        assert_eq!(parse_number("8/255"), Some(8.0 / 255.0));
        assert_eq!(parse_number("0.3"), Some(0.3));
        assert_eq!(parse_number("1/0"), None);
        assert_eq!(parse_number("abc"), None);
    }
}
