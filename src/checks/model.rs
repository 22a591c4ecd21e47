//! Checks of the model itself: its outputs are logits, its input gradients are present, finite,
//! non-zero and deterministic.

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{Goal, Loss};

use super::{batch_tensor, check, logits_rows, rules, Ctx};
use crate::report::{Check, Status};
use crate::Result;

/// Softmax outputs make cross-entropy flat where the model is confident: the attack sees no slope.
pub(super) fn outputs_are_logits(ctx: &Ctx<'_>, idx: &[usize]) -> Result<Check> {
    const NAME: &str = "outputs_are_logits";
    let rows = logits_rows(ctx, idx)?;
    if rows.is_empty() {
        return Ok(check(NAME, Status::Pass, "no clean-correct samples to look at".into()));
    }
    if rows.iter().flatten().any(|v| !v.is_finite()) {
        return Ok(check(NAME, Status::Fail, "the model's outputs contain NaN or infinite values".into()));
    }
    let prob = rows
        .iter()
        .filter(|r| r.iter().all(|&v| (-1e-6..=1.0 + 1e-6).contains(&v)) && (r.iter().sum::<f32>() - 1.0).abs() < 1e-3)
        .count();
    let logprob = rows
        .iter()
        .filter(|r| {
            let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + r.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
            r.iter().all(|&v| v <= 1e-6) && lse.abs() < 1e-3
        })
        .count();
    let (lo, hi) = rows.iter().flatten().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let n = rows.len();
    Ok(if prob * 10 >= n * 9 {
        check(
            NAME,
            Status::Fail,
            format!(
                "{prob} of {n} output rows are probabilities (in [0, 1], summing to 1): the model ends in a softmax, \
                 which flattens the loss and masks gradients; evaluate the logits (remove the final softmax)"
            ),
        )
    } else if logprob * 10 >= n * 9 {
        check(
            NAME,
            Status::Pass,
            format!("outputs are log-probabilities ({logprob} of {n} rows), equivalent to logits for the losses used"),
        )
    } else {
        check(
            NAME,
            Status::Pass,
            format!("outputs are logits: {prob} of {n} rows look like probabilities; range [{lo:.3}, {hi:.3}]"),
        )
    })
}

/// Gradients present, finite, non-zero and deterministic.
pub(super) fn gradients(ctx: &Ctx<'_>, idx: &[usize]) -> Result<Check> {
    const NAME: &str = "gradients";
    if idx.is_empty() {
        return Ok(check(NAME, Status::Pass, "no clean-correct samples to look at".into()));
    }
    let chunk = &idx[..idx.len().min(ctx.cfg.batch_size.max(1))];
    let data = ctx.data.select(chunk)?;
    let x = batch_tensor(&data, &(0..chunk.len()).collect::<Vec<_>>(), ctx.model.device())?;
    let goal = Goal::untargeted(data.labels.clone());
    type Rows = Vec<Vec<f32>>;
    let pass = |x: &Tensor| -> std::result::Result<(Rows, Rows), String> {
        let lg = ctx.model.loss_and_grad(x, &goal, Loss::CrossEntropy).map_err(|e| e.to_string())?;
        let rows = |t: &Tensor| -> std::result::Result<Vec<Vec<f32>>, String> {
            t.to_device(&Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.flatten_from(1))
                .and_then(|t| t.to_vec2::<f32>())
                .map_err(|e| e.to_string())
        };
        Ok((rows(&lg.logits)?, rows(&lg.grad)?))
    };
    let (first, second) = match (pass(&x), pass(&x)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return Ok(check(
                NAME,
                Status::Fail,
                format!(
                    "no input gradient ({e}); gradient attacks cannot run, use a gradient-free attack such as square"
                ),
            ))
        }
    };
    let n = chunk.len();
    let nonfinite = first.1.iter().filter(|g| g.iter().any(|v| !v.is_finite())).count();
    let zero = first.1.iter().filter(|g| g.iter().all(|&v| v == 0.0)).count();
    let max_rel = |a: &[Vec<f32>], b: &[Vec<f32>]| -> f64 {
        let scale = a.iter().flatten().fold(0f64, |m, &v| m.max(f64::from(v.abs()))).max(1e-30);
        a.iter().flatten().zip(b.iter().flatten()).fold(0f64, |m, (&u, &v)| m.max(f64::from((u - v).abs()))) / scale
    };
    let plain = logits_rows(ctx, chunk)?;
    let logit_diff = max_rel(&first.0, &second.0).max(max_rel(&first.0, &plain));
    let grad_diff = max_rel(&first.1, &second.1);
    let mean_norm =
        first.1.iter().map(|g| g.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt()).sum::<f64>() / n as f64;
    let numbers = format!(
        "{n} samples: {zero} with an all-zero gradient, {nonfinite} non-finite, mean ‖∇‖₂ {mean_norm:.3e}; \
         same input twice: logits differ by {logit_diff:.1e}, gradients by {grad_diff:.1e} (relative)"
    );
    let status = if nonfinite > 0 || zero as f64 >= rules::ZERO_GRADIENT_FAIL * n as f64 || logit_diff > 1e-5 {
        Status::Fail
    } else if zero > 0 || grad_diff > 1e-4 {
        Status::Warn
    } else {
        Status::Pass
    };
    Ok(check(NAME, status, numbers))
}
