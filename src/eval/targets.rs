//! Targeted evaluations: how each sample's target classes are chosen.

use gauntlet_attacks::NoiseKey;
use rand::Rng;

use crate::{Error, Result};

/// How the target classes of a targeted evaluation are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetMode {
    /// One given class per sample.
    Given(Vec<u32>),
    /// A class drawn uniformly from those other than the label, per sample, from the seed.
    Random,
    /// The class with the lowest clean logit.
    LeastLikely,
    /// Each of the k classes with the highest clean logits other than the label, in turn.
    Top(usize),
}

impl TargetMode {
    /// The mode's name in reports: `given`, `random`, `least-likely` or `top-K`.
    pub fn name(&self) -> String {
        match self {
            TargetMode::Given(_) => "given".into(),
            TargetMode::Random => "random".into(),
            TargetMode::LeastLikely => "least-likely".into(),
            TargetMode::Top(k) => format!("top-{k}"),
        }
    }
}

impl TargetMode {
    /// Refuses targets that cannot work for `n` samples of `classes` classes.
    pub fn check(&self, n: usize, classes: usize) -> Result<()> {
        match self {
            TargetMode::Given(t) if t.len() < n => {
                Err(Error::Config(format!("{} target labels for {n} samples", t.len())))
            }
            TargetMode::Given(t) => match t.iter().find(|&&c| c as usize >= classes) {
                Some(bad) => Err(Error::Config(format!("target class {bad} is out of range for {classes} classes"))),
                None => Ok(()),
            },
            TargetMode::Top(k) if *k == 0 || *k >= classes => {
                Err(Error::Config(format!("top-{k} targets: k must be between 1 and {}", classes.saturating_sub(1))))
            }
            _ if classes < 2 => Err(Error::Config("targeted attacks need at least 2 classes".into())),
            _ => Ok(()),
        }
    }

    /// Per sample, the target classes tried in turn (`logits`: the clean logits, needed for
    /// least-likely and top-k targets). `labels[0]` is sample `first` of the whole dataset: given
    /// targets and random draws are those of the whole dataset's samples.
    pub fn resolve(
        &self,
        labels: &[u32],
        first: usize,
        logits: &[Vec<f32>],
        classes: usize,
        seed: u64,
    ) -> Vec<Vec<u32>> {
        let mode = self;
        let others = |i: usize| -> Vec<u32> { (0..classes as u32).filter(|&c| c != labels[i]).collect() };
        (0..labels.len())
            .map(|i| match mode {
                TargetMode::Given(t) => vec![t[first + i]],
                TargetMode::Random => {
                    let key = NoiseKey { seed, stream: u64::MAX, restart: 0 };
                    let o = others(i);
                    vec![o[key.rng((first + i) as u64).random_range(0..o.len())]]
                }
                TargetMode::LeastLikely => {
                    let z = &logits[i];
                    let mut o = others(i);
                    // Lowest logit; ties go to the lower class index.
                    o.sort_by(|&a, &b| z[a as usize].total_cmp(&z[b as usize]));
                    vec![o[0]]
                }
                TargetMode::Top(k) => {
                    let z = &logits[i];
                    let mut o = others(i);
                    o.sort_by(|&a, &b| z[b as usize].total_cmp(&z[a as usize]));
                    o.truncate(*k);
                    o
                }
            })
            .collect()
    }
}
