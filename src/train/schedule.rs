//! Learning-rate schedules and the ε ramp, as functions of the training progress.

use serde::{Deserialize, Serialize};

/// How the learning rate moves over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The peak rate throughout.
    Constant,
    /// Linear from 0 to the peak at 40% of the steps, then linear back to 0 (Wong et al. 2020's
    /// cyclic schedule, Smith's one-cycle policy).
    OneCycle,
    /// The peak rate, divided by 10 at 50% and again at 75% of the steps (Madry et al.; Rice et al.).
    Piecewise,
}

impl LrSchedule {
    /// The rate at step `t` of `total` for the peak rate `peak`.
    pub fn rate(self, peak: f64, t: usize, total: usize) -> f64 {
        let f = t as f64 / total.max(1) as f64;
        match self {
            LrSchedule::Constant => peak,
            LrSchedule::OneCycle => {
                if f < 0.4 {
                    peak * f / 0.4
                } else {
                    peak * (1.0 - f).max(0.0) / 0.6
                }
            }
            LrSchedule::Piecewise if f < 0.5 => peak,
            LrSchedule::Piecewise if f < 0.75 => peak / 10.0,
            LrSchedule::Piecewise => peak / 100.0,
        }
    }
}

/// The training budget at step `t` (counted from 0) with `per_epoch` steps an epoch: ε rises
/// linearly over the first `ramp` epochs and stays at ε after them.
pub fn ramped_eps(eps: f64, ramp: f64, t: usize, per_epoch: usize) -> f64 {
    if ramp <= 0.0 {
        return eps;
    }
    eps * ((t + 1) as f64 / (ramp * per_epoch as f64)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_peaks_at_two_fifths_and_ends_at_zero() {
        let s = LrSchedule::OneCycle;
        assert_eq!(s.rate(1.0, 0, 100), 0.0);
        assert!((s.rate(1.0, 40, 100) - 1.0).abs() < 1e-12);
        assert!((s.rate(1.0, 20, 100) - 0.5).abs() < 1e-12);
        assert!((s.rate(1.0, 70, 100) - 0.5).abs() < 1e-12);
        assert_eq!(s.rate(1.0, 100, 100), 0.0);
    }

    #[test]
    fn piecewise_divides_by_ten_twice() {
        let s = LrSchedule::Piecewise;
        assert_eq!(s.rate(0.1, 49, 100), 0.1);
        assert!((s.rate(0.1, 50, 100) - 0.01).abs() < 1e-15);
        assert!((s.rate(0.1, 99, 100) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn eps_ramps_linearly_then_holds() {
        assert!((ramped_eps(0.3, 2.0, 99, 100) - 0.15).abs() < 1e-12);
        assert!((ramped_eps(0.3, 2.0, 199, 100) - 0.3).abs() < 1e-12);
        assert_eq!(ramped_eps(0.3, 2.0, 500, 100), 0.3);
        assert_eq!(ramped_eps(0.3, 0.0, 0, 100), 0.3);
    }
}
