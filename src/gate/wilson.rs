//! The Wilson score interval, for judging an accuracy measured on n samples by the lower (or
//! upper) end of its confidence interval.

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// z for a two-sided interval of the given confidence (inverse normal CDF by bisection on erf).
pub fn z_for(confidence: f64) -> f64 {
    if (confidence - 0.95).abs() < 1e-12 {
        return Z95;
    }
    let target = 1.0 - (1.0 - confidence) / 2.0;
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// erf by its Taylor series (|x| ≤ 3) or the continued fraction of erfc; accurate to ~1e-13.
fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    if x <= 3.0 {
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        return sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …)))).
    let mut f = x;
    for k in (1..60).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    1.0 - (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
}

/// The Wilson score interval of k successes in n trials.
pub fn wilson(k: usize, n: usize, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = z_for(confidence);
    let (nf, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / nf;
    let centre = p + z * z / (2.0 * nf);
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    (((centre - half) / denom).max(0.0), ((centre + half) / denom).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // Wilson 95% interval of 81/263 (Wikipedia, "Binomial proportion confidence interval").
        let (lo, hi) = wilson(81, 263, 0.95);
        assert!((lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4, "{lo} {hi}");
        // All successes: the upper end is 1 and the lower end n/(n+z²).
        let (lo, hi) = wilson(200, 200, 0.95);
        assert!((lo - 200.0 / (200.0 + Z95 * Z95)).abs() < 1e-12 && hi == 1.0);
    }

    #[test]
    fn z_by_bisection_matches_tables() {
        assert!((z_for(0.9) - 1.644_853_626_951).abs() < 1e-9);
        assert!((z_for(0.99) - 2.575_829_303_549).abs() < 1e-9);
    }
}
