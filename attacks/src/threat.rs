//! Threat models: the norm, the budget ε and the pixel bounds. Every norm-specific piece —
//! distance, steepest-ascent step, projection onto the ε-ball, random start — lives here, once.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor, D};
use gauntlet_models::Bounds;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::rows::{per_row, row_shape, to_f64};
use crate::{AttackError, Result};

/// The distance in which the attacker's budget is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Linf,
    L2,
}

impl Norm {
    pub fn name(self) -> &'static str {
        match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        }
    }

    /// Per-row norm of a batch tensor, in f64 on the CPU.
    pub fn row_norms(self, t: &Tensor) -> Result<Vec<f64>> {
        let flat = t.flatten_from(1)?.to_dtype(DType::F64)?;
        to_f64(&match self {
            Norm::Linf => flat.abs()?.max(D::Minus1)?,
            Norm::L2 => flat.sqr()?.sum(D::Minus1)?.sqrt()?,
        })
    }

    /// Per-row dual norm (L1 for L∞, L2 for L2), in f64 on the CPU: the rate at which a linear
    /// function with gradient `t` can change per unit of this norm.
    pub fn dual_norms(self, t: &Tensor) -> Result<Vec<f64>> {
        match self {
            Norm::Linf => to_f64(&t.flatten_from(1)?.to_dtype(DType::F64)?.abs()?.sum(D::Minus1)?),
            Norm::L2 => Norm::L2.row_norms(t),
        }
    }

    /// Projects each row of the perturbation `delta` onto the ball of its own radius `radii[i]`.
    pub fn project_rows(self, delta: &Tensor, radii: &[f64]) -> Result<Tensor> {
        let r = per_row(radii, delta)?;
        Ok(match self {
            Norm::Linf => delta.broadcast_minimum(&r)?.broadcast_maximum(&r.neg()?)?,
            Norm::L2 => {
                let len = per_row(&Norm::L2.row_norms(delta)?, delta)?;
                delta.broadcast_mul(&(&r / (len + TINY)?)?.clamp(0.0, 1.0)?)?
            }
        })
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Norm {
    type Err = AttackError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "linf" | "l-inf" | "inf" | "l∞" => Ok(Norm::Linf),
            "l2" | "2" => Ok(Norm::L2),
            other => Err(AttackError::Threat(format!("unknown norm `{other}`; use linf or l2"))),
        }
    }
}

/// What the attacker may do to each input: ‖x′ − x‖ ≤ ε in `norm`, and x′ within `bounds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreatModel {
    pub norm: Norm,
    pub eps: f64,
    pub bounds: Bounds,
}

/// Key of a per-sample random stream: the same numbers for a sample whatever the batch it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseKey {
    pub seed: u64,
    pub stream: u64,
    pub restart: u64,
}

impl NoiseKey {
    /// A generator for sample `id`.
    pub fn rng(&self, id: u64) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        for (i, v) in [self.seed, self.stream, id, self.restart].iter().enumerate() {
            key[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
        }
        ChaCha8Rng::from_seed(key)
    }
}

pub(crate) const TINY: f64 = 1e-12;

impl ThreatModel {
    pub fn new(norm: Norm, eps: f64, bounds: Bounds) -> Result<Self> {
        if !(eps.is_finite() && eps > 0.0) {
            return Err(AttackError::Threat(format!("ε must be a positive number, got {eps}")));
        }
        Ok(ThreatModel { norm, eps, bounds })
    }

    /// Per-sample L2 norm of (N, …) as (N, 1, …, 1), for broadcasting.
    fn l2_rows(t: &Tensor) -> candle_core::Result<Tensor> {
        t.flatten_from(1)?.sqr()?.sum_keepdim(1)?.sqrt()?.reshape(row_shape(t.dim(0)?, t))
    }

    /// The steepest-ascent step of length `step` in this norm: step·sign(g) (L∞) or step·g/‖g‖₂ (L2).
    pub fn ascent(&self, grad: &Tensor, step: f64) -> Result<Tensor> {
        Ok(match self.norm {
            Norm::Linf => (grad.sign()? * step)?,
            Norm::L2 => (grad.broadcast_div(&(Self::l2_rows(grad)? + TINY)?)? * step)?,
        })
    }

    /// Projects `x` onto the ε-ball around `x0`, then clamps it to the bounds.
    pub fn project(&self, x0: &Tensor, x: &Tensor) -> Result<Tensor> {
        let delta = (x - x0)?;
        let delta = match self.norm {
            Norm::Linf => delta.clamp(-self.eps, self.eps)?,
            Norm::L2 => {
                let factor = (Self::l2_rows(&delta)? + TINY)?.recip()?.affine(self.eps, 0.0)?.clamp(0.0, 1.0)?;
                delta.broadcast_mul(&factor)?
            }
        };
        Ok((x0 + delta)?.clamp(self.bounds.lo, self.bounds.hi)?)
    }

    /// A random point of the ε-ball around each row of `x0`, clamped to the bounds. L∞: uniform in
    /// the cube; L2: a uniformly random direction at a radius drawn uniformly from [0, ε]. Drawn on
    /// the CPU from the per-sample stream `key.rng(ids[i])`, so that the result does not depend on
    /// batch composition or device.
    pub fn random_start(&self, x0: &Tensor, ids: &[u64], key: NoiseKey) -> Result<Tensor> {
        self.perturb(x0, ids, key, |rng, per, noise| match self.norm {
            Norm::Linf => noise.extend((0..per).map(|_| rng.random_range(-self.eps..=self.eps) as f32)),
            Norm::L2 => {
                let dir: Vec<f64> = (0..per).map(|_| gaussian(rng)).collect();
                let len = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(TINY);
                let r = rng.random::<f64>() * self.eps;
                noise.extend(dir.iter().map(|v| (v / len * r) as f32));
            }
        })
    }

    /// A random point of the ε-sphere around each row of `x0`, clamped to the bounds, as APGD's
    /// reference implementation draws it: L∞, a uniform draw in [−1, 1) scaled so that its largest
    /// coordinate is ε; L2, a Gaussian direction of length ε. Per sample stream, as
    /// [`ThreatModel::random_start`].
    pub fn random_on_sphere(&self, x0: &Tensor, ids: &[u64], key: NoiseKey) -> Result<Tensor> {
        self.perturb(x0, ids, key, |rng, per, noise| {
            let t: Vec<f64> = match self.norm {
                Norm::Linf => (0..per).map(|_| rng.random_range(-1.0..1.0)).collect(),
                Norm::L2 => (0..per).map(|_| gaussian(rng)).collect(),
            };
            let scale = match self.norm {
                Norm::Linf => t.iter().fold(0f64, |m, v| m.max(v.abs())),
                Norm::L2 => t.iter().map(|v| v * v).sum::<f64>().sqrt(),
            } + TINY;
            noise.extend(t.iter().map(|v| (self.eps * v / scale) as f32));
        })
    }

    /// x0 plus noise that `draw` appends per row (`per` values) from the row's stream, clamped.
    fn perturb(
        &self,
        x0: &Tensor,
        ids: &[u64],
        key: NoiseKey,
        draw: impl Fn(&mut ChaCha8Rng, usize, &mut Vec<f32>),
    ) -> Result<Tensor> {
        let n = x0.dim(0)?;
        let per = x0.elem_count() / n.max(1);
        let mut noise = Vec::with_capacity(n * per);
        for &id in ids {
            draw(&mut key.rng(id), per, &mut noise);
        }
        let noise = Tensor::from_vec(noise, x0.shape(), &Device::Cpu)?.to_device(x0.device())?.to_dtype(x0.dtype())?;
        Ok((x0 + noise)?.clamp(self.bounds.lo, self.bounds.hi)?)
    }

    /// Exact projection on the CPU, in f64, for the evaluator's verification: afterwards
    /// ‖x − x0‖ ≤ ε holds for the f32 values themselves and x lies within the bounds. Non-finite
    /// values fall back to the clean value.
    pub fn project_exact(&self, x0: &[f32], x: &mut [f32]) {
        let (lo, hi) = (self.bounds.lo as f64, self.bounds.hi as f64);
        for (v, &c) in x.iter_mut().zip(x0) {
            if !v.is_finite() {
                *v = c;
            }
        }
        match self.norm {
            Norm::Linf => {
                for (v, &c) in x.iter_mut().zip(x0) {
                    let d = (*v as f64 - c as f64).clamp(-self.eps, self.eps);
                    let mut r = (c as f64 + d).clamp(lo, hi) as f32;
                    // Rounding to f32 may overshoot by half an ulp: step back towards the clean value.
                    while (r as f64 - c as f64).abs() > self.eps || (r as f64) < lo || (r as f64) > hi {
                        r = toward(r, c);
                    }
                    *v = r;
                }
            }
            Norm::L2 => {
                let mut scale = 1.0f64;
                let orig: Vec<f64> = x.iter().zip(x0).map(|(&v, &c)| v as f64 - c as f64).collect();
                let norm = orig.iter().map(|d| d * d).sum::<f64>().sqrt();
                if norm > self.eps {
                    scale = self.eps / norm;
                }
                for _ in 0..8 {
                    for ((v, &c), d) in x.iter_mut().zip(x0).zip(&orig) {
                        *v = (c as f64 + d * scale).clamp(lo, hi) as f32;
                    }
                    let (_, l2) = distances(x0, x);
                    if l2 <= self.eps {
                        return;
                    }
                    scale *= (self.eps / l2) * (1.0 - 1e-7);
                }
                x.copy_from_slice(x0);
            }
        }
    }

    /// Whether `x` is within budget (with relative tolerance 1e-6) and bounds.
    pub fn admits(&self, x0: &[f32], x: &[f32]) -> bool {
        let (linf, l2) = distances(x0, x);
        let d = match self.norm {
            Norm::Linf => linf,
            Norm::L2 => l2,
        };
        d <= self.eps * (1.0 + 1e-6) && x.iter().all(|&v| v >= self.bounds.lo && v <= self.bounds.hi)
    }
}

/// (‖x − x0‖∞, ‖x − x0‖₂), computed in f64.
pub fn distances(x0: &[f32], x: &[f32]) -> (f64, f64) {
    let mut linf = 0f64;
    let mut sq = 0f64;
    for (&a, &b) in x.iter().zip(x0) {
        let d = (a as f64 - b as f64).abs();
        linf = linf.max(d);
        sq += d * d;
    }
    (linf, sq.sqrt())
}

/// The neighbouring f32 of `r` one ulp towards `c`.
fn toward(r: f32, c: f32) -> f32 {
    if r == c {
        return r;
    }
    let bits = r.to_bits();
    let up = (r < c) == (r >= 0.0);
    if r == 0.0 {
        if c > 0.0 {
            f32::from_bits(1)
        } else {
            -f32::from_bits(1)
        }
    } else if up {
        f32::from_bits(bits + 1)
    } else {
        f32::from_bits(bits - 1)
    }
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng_vec(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..=hi)).collect()
    }

    #[test]
    fn exact_projection_never_exceeds_the_budget() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for norm in [Norm::Linf, Norm::L2] {
            for &eps in &[1e-3, 0.05, 8.0 / 255.0, 0.3, 2.0] {
                let t = ThreatModel::new(norm, eps, Bounds::default()).unwrap();
                for _ in 0..200 {
                    let x0 = rng_vec(&mut rng, 784, 0.0, 1.0);
                    let mut x = rng_vec(&mut rng, 784, -0.5, 1.5);
                    t.project_exact(&x0, &mut x);
                    let (linf, l2) = distances(&x0, &x);
                    let d = if norm == Norm::Linf { linf } else { l2 };
                    assert!(d <= eps, "{norm} eps {eps}: distance {d}");
                    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
                    assert!(t.admits(&x0, &x));
                }
            }
        }
    }

    #[test]
    fn exact_projection_keeps_points_inside_and_replaces_nan() {
        let t = ThreatModel::new(Norm::Linf, 0.1, Bounds::default()).unwrap();
        let x0 = vec![0.5f32, 0.95, 0.0];
        let mut x = vec![0.55f32, f32::NAN, 0.2];
        t.project_exact(&x0, &mut x);
        assert_eq!(x[0], 0.55);
        assert_eq!(x[1], 0.95);
        assert!((x[2] - 0.1).abs() < 1e-7 && x[2] <= 0.1 + 1e-9);
    }

    #[test]
    fn l2_projection_scales_onto_the_sphere() {
        let t = ThreatModel::new(Norm::L2, 1.0, Bounds { lo: -10.0, hi: 10.0 }).unwrap();
        let x0 = vec![0f32; 4];
        let mut x = vec![3f32, 4.0, 0.0, 0.0];
        t.project_exact(&x0, &mut x);
        assert!((x[0] - 0.6).abs() < 1e-6 && (x[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn tensor_projection_and_steps_respect_the_norm() {
        let dev = Device::Cpu;
        let x0 = Tensor::from_vec(vec![0.5f32; 8], (2, 1, 2, 2), &dev).unwrap();
        let g = Tensor::from_vec(vec![1f32, -2.0, 0.5, 0.0, 3.0, 4.0, 0.0, 0.0], (2, 1, 2, 2), &dev).unwrap();
        let linf = ThreatModel::new(Norm::Linf, 0.1, Bounds::default()).unwrap();
        let s = linf.ascent(&g, 0.1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(s, vec![0.1, -0.1, 0.1, 0.0, 0.1, 0.1, 0.0, 0.0]);
        let l2 = ThreatModel::new(Norm::L2, 0.5, Bounds::default()).unwrap();
        let s = l2.ascent(&g, 1.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((s[4] - 0.6).abs() < 1e-6 && (s[5] - 0.8).abs() < 1e-6);
        let far = (&x0 + (g * 10.0).unwrap()).unwrap();
        let p = l2.project(&x0, &far).unwrap();
        let d = (p - &x0).unwrap().flatten_from(1).unwrap().sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
        for v in d.to_vec1::<f32>().unwrap() {
            assert!(v <= 0.5 + 1e-5, "{v}");
        }
    }

    #[test]
    fn random_starts_are_per_sample_and_inside_the_ball() {
        let dev = Device::Cpu;
        let x0 = Tensor::from_vec(vec![0.5f32; 3 * 16], (3, 1, 4, 4), &dev).unwrap();
        for norm in [Norm::Linf, Norm::L2] {
            let t = ThreatModel::new(norm, 0.2, Bounds::default()).unwrap();
            let key = NoiseKey { seed: 9, stream: 1, restart: 0 };
            let all =
                t.random_start(&x0, &[10, 11, 12], key).unwrap().flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
            let one = t
                .random_start(&x0.narrow(0, 1, 1).unwrap(), &[11], key)
                .unwrap()
                .flatten_from(1)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            assert_eq!(all[1], one[0], "a sample's start must not depend on its batch");
            assert_ne!(all[0], all[1]);
            for row in &all {
                let (linf, l2) = distances(&[0.5; 16], row);
                assert!(if norm == Norm::Linf { linf } else { l2 } <= 0.2 + 1e-6);
            }
        }
    }
}
