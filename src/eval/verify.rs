//! The evaluator's re-check of what an attack returned: projection onto the ε-ball and the bounds
//! in f64, the budget and bounds checked, and an independent forward pass.

use candle_core::{Device, Tensor};
use gauntlet_attacks::{distances, Norm, ThreatModel};
use gauntlet_datasets::ImageSet;
use gauntlet_models::{predictions, Classifier, Goal};

use super::CellStats;
use crate::{Error, Result};

/// A re-checked row: `Some((prediction, ‖δ‖∞, ‖δ‖₂))` when adversarial.
type Verdict = Option<(u32, f64, f64)>;

/// Re-projects, re-checks and re-classifies an attack's output. Per row: `Some((prediction, ‖δ‖∞,
/// ‖δ‖₂))` when the row is a valid adversarial example, `None` otherwise; and the projected rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn verify(
    model: &dyn Classifier,
    attack: &str,
    data: &ImageSet,
    chunk: &[usize],
    goal: &Goal,
    x_adv: &Tensor,
    threat: &ThreatModel,
    cell: &mut CellStats,
) -> Result<(Vec<Verdict>, Vec<f32>)> {
    let per = data.per_image();
    let expected = [chunk.len(), data.shape[0], data.shape[1], data.shape[2]];
    if x_adv.dims() != expected {
        return Err(Error::AttackContract {
            attack: attack.to_string(),
            message: format!("returned shape {:?} for a batch of shape {expected:?}", x_adv.dims()),
        });
    }
    let mut rows = x_adv.to_device(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut within = vec![true; chunk.len()];
    // Rounding of x + δ in f32: half a unit in the last place of the largest pixel value per
    // coordinate. Without it a tiny ε (1e-4) counts every exact attack output as out of budget.
    let ulp = f64::from(f32::EPSILON) * f64::from(threat.bounds.lo.abs().max(threat.bounds.hi.abs()).max(1.0));
    let slack = match threat.norm {
        Norm::Linf => ulp,
        Norm::L2 => ulp * (per as f64).sqrt(),
    };
    for (j, &i) in chunk.iter().enumerate() {
        let x0 = data.image(i);
        let row = &mut rows[j * per..(j + 1) * per];
        let (linf, l2) = distances(x0, row);
        let size = match threat.norm {
            Norm::Linf => linf,
            Norm::L2 => l2,
        };
        let (lo, hi) = (threat.bounds.lo - 1e-6, threat.bounds.hi + 1e-6);
        let outside = row.iter().any(|v| !(lo..=hi).contains(v));
        let ratio = if size.is_finite() { size / threat.eps } else { f64::INFINITY };
        cell.max_ratio = cell.max_ratio.max(ratio);
        if outside || size > threat.eps * (1.0 + 1e-5) + slack {
            cell.out_of_budget += 1;
        }
        threat.project_exact(x0, row);
        within[j] = threat.admits(x0, row);
    }
    let [c, h, w] = data.shape;
    let x = Tensor::from_slice(&rows, (chunk.len(), c, h, w), &Device::Cpu)?.to_device(model.device())?;
    let preds = predictions(&model.logits(&x)?)?;
    let verdicts = chunk
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            if !within[j] || !goal.achieved(j, preds[j]) {
                return None;
            }
            let (linf, l2) = distances(data.image(i), &rows[j * per..(j + 1) * per]);
            Some((preds[j], linf, l2))
        })
        .collect();
    Ok((verdicts, rows))
}
