//! Row bookkeeping shared by the attacks: picking and mixing rows of a batch tensor, per-row
//! scalars, and the answer assembled per sample as rows succeed.

use candle_core::{DType, Device, Shape, Tensor};
use gauntlet_models::{predictions, Goal};

use crate::Result;

/// (N, 1, …, 1) for a per-row value broadcast over `t` (N rows).
pub(crate) fn row_shape(n: usize, t: &Tensor) -> Vec<usize> {
    let mut shape = vec![1usize; t.rank()];
    shape[0] = n;
    shape
}

/// Rows `idx` of a batch tensor.
pub(crate) fn select(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let len = idx.len();
    let idx = Tensor::from_vec(idx, len, t.device())?;
    Ok(t.index_select(&idx, 0)?)
}

/// Rows where `mask` holds take `a`, the others `b`.
pub(crate) fn where_rows(mask: &[bool], a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let m: Vec<u8> = mask.iter().map(|&v| u8::from(v)).collect();
    let m = Tensor::from_vec(m, row_shape(mask.len(), a), a.device())?.broadcast_as(a.shape())?;
    Ok(m.where_cond(a, b)?)
}

/// A per-row scalar as a tensor broadcastable over the rows of `like`.
pub(crate) fn per_row(v: &[f64], like: &Tensor) -> Result<Tensor> {
    let shape = row_shape(v.len(), like);
    Ok(Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)?.to_device(like.device())?.to_dtype(like.dtype())?)
}

/// The values of a vector tensor, in f64 on the CPU.
pub(crate) fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Per row of `logits`, whether its prediction reaches the goal.
pub(crate) fn hits(goal: &Goal, logits: &Tensor) -> Result<Vec<bool>> {
    Ok(predictions(logits)?.iter().enumerate().map(|(j, &p)| goal.achieved(j, p)).collect())
}

/// A batch tensor's rows as f32 vectors on the CPU.
pub(crate) fn to_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_from(1)?.to_vec2::<f32>()?)
}

/// The result batch, assembled on the CPU row by row.
pub(crate) struct Rows {
    data: Vec<f32>,
    per: usize,
    shape: Shape,
    device: Device,
}

impl Rows {
    /// Starts as a copy of `init`.
    pub(crate) fn new(init: &Tensor) -> Result<Self> {
        let n = init.dim(0)?;
        let per = init.elem_count() / n.max(1);
        let data = init.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        Ok(Rows { data, per, shape: init.shape().clone(), device: init.device().clone() })
    }

    pub(crate) fn set(&mut self, i: usize, row: &[f32]) {
        self.data[i * self.per..(i + 1) * self.per].copy_from_slice(row);
    }

    pub(crate) fn into_tensor(self) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.data, self.shape, &Device::Cpu)?.to_device(&self.device)?)
    }
}

/// Per sample, the attack's answer so far: the input, the iteration that produced it and whether
/// it reached the goal. Starts as the clean inputs.
pub(crate) struct Found {
    pub out: Rows,
    pub steps: Vec<Option<u32>>,
    pub reached: Vec<bool>,
}

impl Found {
    pub(crate) fn new(x0: &Tensor) -> Result<Self> {
        let n = x0.dim(0)?;
        Ok(Found { out: Rows::new(x0)?, steps: vec![None; n], reached: vec![false; n] })
    }

    pub(crate) fn set(&mut self, i: usize, row: &[f32], step: u32, reached: bool) {
        self.out.set(i, row);
        self.steps[i] = Some(step);
        self.reached[i] = reached;
    }

    /// Records, at iteration `t`, the rows of `x` that `hit` the goal (every row when `last`),
    /// row j standing for sample `sample[j]`; a sample already reached keeps its first success.
    /// Returns the rows whose sample is still unbroken.
    pub(crate) fn record(
        &mut self,
        sample: &[usize],
        x: &Tensor,
        hit: &[bool],
        t: u32,
        last: bool,
    ) -> Result<Vec<usize>> {
        if last || hit.iter().any(|&h| h) {
            let rows = to_rows(x)?;
            for (j, &i) in sample.iter().enumerate() {
                if !self.reached[i] && (hit[j] || last) {
                    self.set(i, &rows[j], t, hit[j]);
                }
            }
        }
        Ok((0..sample.len()).filter(|&j| !self.reached[sample[j]]).collect())
    }
}
