//! What an evaluation hands to the report besides the numbers: per-sample records
//! (`samples.jsonl`) and the kept adversarial examples.

use gauntlet_datasets::Source;

use super::Evaluation;
use crate::report::adversarial::AdvExample;
use crate::report::samples::{SampleRecord, SampleResult};
use crate::Result;

impl Evaluation {
    /// Every sample's record.
    pub fn sample_records(&self) -> Vec<SampleRecord> {
        let ev = self;
        (0..ev.samples())
            .map(|i| {
                let mut results = Vec::with_capacity(ev.attacks.len() * ev.eps.len());
                for (a, rec) in ev.attacks.iter().enumerate() {
                    for (k, &eps) in ev.eps.iter().enumerate() {
                        let hit = rec.broken[i].as_ref().filter(|_| ev.broken_by(a, i, k));
                        results.push(SampleResult {
                            attack: rec.name.clone(),
                            eps,
                            broken: hit.is_some(),
                            adv_pred: hit.map(|b| b.adv_pred),
                            linf: hit.map(|b| b.linf),
                            l2: hit.map(|b| b.l2),
                            step: hit.and_then(|b| b.step),
                            first_eps: hit.map(|b| ev.eps[b.eps_index]),
                        });
                    }
                }
                SampleRecord {
                    index: ev.first + i,
                    label: ev.labels[i],
                    clean_pred: ev.clean_pred[i],
                    correct: ev.correct(i),
                    targets: ev.targets.as_ref().map(|t| t[i].clone()),
                    results,
                    robust: (0..ev.eps.len()).map(|k| ev.robust_all(i, k)).collect(),
                    certificates: Vec::new(),
                }
            })
            .collect()
    }

    /// The examples kept by [`evaluate_keeping`](super::evaluate_keeping), attack by attack, beside
    /// their clean images, read from `data` (the whole dataset).
    pub fn adversarial_examples(&self, data: &dyn Source) -> Result<Vec<AdvExample>> {
        let ev = self;
        let wanted: Vec<usize> =
            ev.attacks.iter().flat_map(|r| r.examples.iter().map(|e| ev.first + e.sample)).collect();
        let clean = data.select(&wanted)?;
        let mut row = 0;
        let mut out = Vec::new();
        for rec in &ev.attacks {
            for kept in &rec.examples {
                let i = &kept.sample;
                let clean_image = clean.image(row).to_vec();
                row += 1;
                let Some(b) = rec.broken[*i].as_ref().filter(|_| kept.pixels.len() == clean_image.len()) else {
                    continue;
                };
                out.push(AdvExample {
                    attack: rec.name.clone(),
                    index: ev.first + *i,
                    label: ev.labels[*i],
                    clean_pred: ev.clean_pred[*i],
                    adv_pred: b.adv_pred,
                    eps: ev.eps[b.eps_index.min(ev.eps.len() - 1)],
                    linf: b.linf,
                    l2: b.l2,
                    shape: clean.shape,
                    clean: clean_image,
                    adv: kept.pixels.clone(),
                });
            }
        }
        Ok(out)
    }
}
