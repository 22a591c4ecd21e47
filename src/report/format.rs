//! Number and name formatting shared by every output format.

use super::Norm;

/// A fraction as a percentage with two decimals: `0.9856` → `98.56%`.
pub fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// ε as written in tables: at most 4 decimals, trailing zeros dropped.
pub fn fmt_eps(e: f64) -> String {
    let s = format!("{e:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Whether two budgets are the same ε (relative tolerance 1e-9).
pub fn same_eps(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// The norm's symbol: `L∞` or `L2`.
pub fn norm_symbol(norm: Norm) -> &'static str {
    match norm {
        Norm::Linf => "L∞",
        Norm::L2 => "L2",
    }
}

/// The first 12 characters of a hash (fewer if it is shorter; never cut inside a character).
pub fn short_hash(hash: &str) -> &str {
    match hash.char_indices().nth(12) {
        Some((at, _)) => &hash[..at],
        None => hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eps_and_hashes() {
        assert_eq!(fmt_eps(0.3), "0.3");
        assert_eq!(fmt_eps(8.0 / 255.0), "0.0314");
        assert_eq!(fmt_eps(2.0), "2");
        assert_eq!(short_hash("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_hash("ééééééééééééé"), "éééééééééééé");
        assert_eq!(short_hash("abc"), "abc");
        assert!(same_eps(0.1 + 0.2, 0.3) && !same_eps(0.3, 0.3001));
    }
}
