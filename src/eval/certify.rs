//! Certified robust accuracy beside the attacks' robust accuracy: per sample and ε, certified
//! (proven robust by bound propagation, [`gauntlet_models::bounds`]), broken (misclassified, or
//! an attack found a verified adversarial example) or open (neither). The certified accuracy is a
//! lower bound on the true robust accuracy, the attacks' an upper bound.

use std::time::Instant;

use gauntlet_attacks::Norm;
use gauntlet_datasets::Source;
use gauntlet_models::bounds::{Ball, BoundNet, Method};
use gauntlet_models::Classifier;

use super::{Evaluation, Progress};
use crate::report::samples::{CertStatus as Status, SampleCertificate};
use crate::report::CertifiedRow;
use crate::{Error, Result};

/// A method by its command-line name.
pub fn parse_method(text: &str) -> Result<Method> {
    match text.trim().to_ascii_lowercase().as_str() {
        "ibp" => Ok(Method::Ibp),
        "crown" => Ok(Method::Crown),
        other => Err(Error::Config(format!("--certify {other}: use ibp or crown (or both: ibp,crown)"))),
    }
}

/// Everything certification measured.
pub struct Certification {
    pub rows: Vec<CertifiedRow>,
    /// Per sample of the evaluation: per method, per ε.
    pub samples: Vec<Vec<SampleCertificate>>,
    /// (sample, method, ε) certified although an attack broke it: an unsound certificate.
    pub contradictions: Vec<(usize, String, f64)>,
}

/// Certifies the samples `first..first + ev.samples()` of `data` with every method at every ε
/// of the evaluation, `batch` samples at a time.
pub fn certify(
    model: &dyn Classifier,
    net: &BoundNet,
    data: &dyn Source,
    ev: &Evaluation,
    methods: &[Method],
    batch: usize,
    progress: &dyn Progress,
) -> Result<Certification> {
    let ball = match ev.norm {
        Norm::Linf => Ball::Linf,
        Norm::L2 => Ball::L2,
    };
    let n = ev.samples();
    let mut samples = vec![Vec::new(); n];
    let mut rows = Vec::new();
    let mut contradictions = Vec::new();
    for &method in methods {
        progress.stage(&format!("certifying ({})", method.name()));
        let mut time = vec![0.0; ev.eps.len()];
        let mut statuses = vec![vec![Status::Open; ev.eps.len()]; n];
        for start in (0..n).step_by(batch.max(1)) {
            if progress.cancelled() {
                return Err(Error::Interrupted { done: 0, total: n, checkpoint: None });
            }
            let end = (start + batch.max(1)).min(n);
            let images = data.read(ev.first + start..ev.first + end)?;
            for (k, &eps) in ev.eps.iter().enumerate() {
                let t = Instant::now();
                let certs = net.certify(&images.images, &images.labels, eps as f32, ball, method, model.bounds());
                time[k] += t.elapsed().as_secs_f64();
                for (j, c) in certs.iter().enumerate() {
                    let i = start + j;
                    let broken = !ev.correct(i) || ev.first_breaker(i, k).is_some();
                    let status = if ev.correct(i) && c.certified() {
                        if broken {
                            contradictions.push((ev.first + i, method.name().to_string(), eps));
                        }
                        Status::Certified
                    } else if broken {
                        Status::Broken
                    } else {
                        Status::Open
                    };
                    statuses[i][k] = status;
                    samples[i].push(SampleCertificate {
                        method: method.name().into(),
                        eps,
                        status,
                        margin: c.margin(),
                    });
                }
            }
        }
        for (k, &eps) in ev.eps.iter().enumerate() {
            let count = |s: Status| statuses.iter().filter(|v| v[k] == s).count();
            let (certified, broken, open) = (count(Status::Certified), count(Status::Broken), count(Status::Open));
            let robust = (0..n).filter(|&i| ev.robust_all(i, k)).count();
            let frac = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
            rows.push(CertifiedRow {
                method: method.name().into(),
                norm: ev.norm,
                eps,
                certified_accuracy: frac(certified),
                certified,
                broken,
                open,
                robust_accuracy: frac(robust),
                gap: frac(robust) - frac(certified),
                time_s: time[k],
            });
        }
    }
    Ok(Certification { rows, samples, contradictions })
}
