//! Einsum in general form: ellipses, repeated labels (diagonals), implicit output, any number
//! of operands. Labels that only one operand carries and the output does not are summed first;
//! operands are then contracted pairwise as batched matrix products (batch labels × own labels ×
//! contracted labels), which keeps the gradient to every operand.

use candle_core::Tensor;

use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

/// Labels for the axes an ellipsis stands for, outside the letters an equation can use.
fn ellipsis_label(i: usize) -> char {
    char::from_u32(0x100 + i as u32).expect("a valid char")
}

/// One operand's labels with its ellipsis expanded (right-aligned over `ell` axes).
fn expand(ctx: &Ctx, term: &str, rank: Option<usize>, ell: usize) -> Result<Vec<char>> {
    match term.split_once("...") {
        None => Ok(term.chars().collect()),
        Some((before, after)) => {
            let letters = before.chars().count() + after.chars().count();
            let own = match rank {
                Some(r) => {
                    r.checked_sub(letters).ok_or_else(|| ctx.err(format!("term {term:?} has too many labels")))?
                }
                None => ell,
            };
            let mut v: Vec<char> = before.chars().collect();
            v.extend((ell - own..ell).map(ellipsis_label));
            v.extend(after.chars());
            Ok(v)
        }
    }
}

/// Sums `x` over the axes whose label `drop` selects.
fn sum_out(x: Tensor, labels: Vec<char>, drop: impl Fn(char) -> bool) -> Result<(Tensor, Vec<char>)> {
    let mut x = x;
    let mut kept = Vec::new();
    for (a, &l) in labels.iter().enumerate().rev() {
        if drop(l) {
            x = x.sum(a)?;
        } else {
            kept.push(l);
        }
    }
    kept.reverse();
    Ok((x, kept))
}

/// Takes the diagonal of every label that occurs twice in one operand.
fn diagonals(x: Tensor, mut labels: Vec<char>) -> Result<(Tensor, Vec<char>)> {
    let mut x = x;
    loop {
        let dup = labels.iter().enumerate().find_map(|(q, l)| labels[..q].iter().position(|m| m == l).map(|p| (p, q)));
        let Some((p, q)) = dup else { return Ok((x, labels)) };
        let n = x.dims()[p];
        let mut shape = vec![1; x.rank()];
        shape[p] = n;
        shape[q] = n;
        let eye = Tensor::eye(n, x.dtype(), x.device())?.reshape(shape)?;
        x = x.broadcast_mul(&eye)?.sum(q)?;
        labels.remove(q);
    }
}

fn positions(labels: &[char], pick: &[char]) -> Vec<usize> {
    pick.iter().map(|l| labels.iter().position(|m| m == l).expect("label present")).collect()
}

/// Contracts two operands, keeping the labels in `keep`.
fn contract(a: (Tensor, Vec<char>), b: (Tensor, Vec<char>), keep: &[char]) -> Result<(Tensor, Vec<char>)> {
    let (a, la) = a;
    let (b, lb) = b;
    let batch: Vec<char> = la.iter().copied().filter(|l| lb.contains(l) && keep.contains(l)).collect();
    let summed: Vec<char> = la.iter().copied().filter(|l| lb.contains(l) && !keep.contains(l)).collect();
    let a_own: Vec<char> = la.iter().copied().filter(|l| !lb.contains(l)).collect();
    let b_own: Vec<char> = lb.iter().copied().filter(|l| !la.contains(l)).collect();
    // Shared axes of size 1 on one side broadcast against the other.
    let size = |l: char| {
        let da = la.iter().position(|&m| m == l).map_or(1, |p| a.dims()[p]);
        let db = lb.iter().position(|&m| m == l).map_or(1, |p| b.dims()[p]);
        da.max(db)
    };
    let shape_a: Vec<usize> =
        la.iter().map(|&l| if lb.contains(&l) { size(l) } else { a.dims()[positions(&la, &[l])[0]] }).collect();
    let shape_b: Vec<usize> =
        lb.iter().map(|&l| if la.contains(&l) { size(l) } else { b.dims()[positions(&lb, &[l])[0]] }).collect();
    let a = a.broadcast_as(shape_a)?;
    let b = b.broadcast_as(shape_b)?;
    let prod = |ls: &[char]| ls.iter().map(|&l| size(l)).product::<usize>();
    let (nb, m, k, n) = (prod(&batch), prod(&a_own), prod(&summed), prod(&b_own));
    let order_a: Vec<usize> = positions(&la, &[batch.clone(), a_own.clone(), summed.clone()].concat());
    let order_b: Vec<usize> = positions(&lb, &[batch.clone(), summed.clone(), b_own.clone()].concat());
    let a3 = a.permute(order_a)?.contiguous()?.reshape((nb, m, k))?;
    let b3 = b.permute(order_b)?.contiguous()?.reshape((nb, k, n))?;
    let labels: Vec<char> = [batch, a_own, b_own].concat();
    let shape: Vec<usize> = labels.iter().map(|&l| size(l)).collect();
    Ok((a3.matmul(&b3)?.reshape(shape)?, labels))
}

pub fn einsum(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let equation: String = ctx.string("equation", "").chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    let operands: Vec<&Tensor> = inputs.iter().flatten().collect();
    if terms.len() != operands.len() {
        return Err(ctx.err(format!("{} terms for {} inputs", terms.len(), operands.len())));
    }
    let ell = terms
        .iter()
        .zip(&operands)
        .filter(|(t, _)| t.contains("..."))
        .map(|(t, x)| x.rank().saturating_sub(t.chars().filter(|c| c.is_alphabetic()).count()))
        .max()
        .unwrap_or(0);
    let mut ops = Vec::with_capacity(operands.len());
    for (t, x) in terms.iter().zip(&operands) {
        let labels = expand(ctx, t, Some(x.rank()), ell)?;
        if labels.len() != x.rank() {
            return Err(ctx.err(format!("term {t:?} does not fit an input of rank {}", x.rank())));
        }
        ops.push(diagonals((*x).clone(), labels)?);
    }
    let output: Vec<char> = match rhs {
        Some(r) => expand(ctx, r, None, ell)?,
        None => {
            let all: Vec<char> = ops.iter().flat_map(|(_, l)| l.clone()).collect();
            let mut once: Vec<char> = all
                .iter()
                .copied()
                .filter(|c| c.is_alphabetic() && (*c as u32) < 0x100 && all.iter().filter(|d| *d == c).count() == 1)
                .collect();
            once.sort_unstable();
            let mut out: Vec<char> = (0..ell).map(ellipsis_label).collect();
            out.extend(once);
            out
        }
    };
    // Sum each operand's labels that nothing else needs, then contract left to right.
    let mut acc: Option<(Tensor, Vec<char>)> = None;
    for i in 0..ops.len() {
        let later: Vec<char> = ops[i + 1..].iter().flat_map(|(_, l)| l.clone()).chain(output.iter().copied()).collect();
        let (x, labels) = ops[i].clone();
        let others: Vec<char> = acc.as_ref().map(|(_, l)| l.clone()).unwrap_or_default();
        let own = sum_out(x, labels, |l| !later.contains(&l) && !others.contains(&l))?;
        acc = Some(match acc {
            None => own,
            Some(prev) => {
                let prev = sum_out(prev.0, prev.1, |l| !later.contains(&l) && !own.1.contains(&l))?;
                contract(prev, own, &later)?
            }
        });
    }
    let (y, labels) = acc.ok_or_else(|| ctx.err("no inputs"))?;
    let (y, labels) = sum_out(y, labels, |l| !output.contains(&l))?;
    if labels.len() != output.len() || output.iter().any(|l| !labels.contains(l)) {
        return Err(ctx.err(format!("output {rhs:?} names labels that no input has")));
    }
    let order = positions(&labels, &output);
    Ok(vec![if order.is_empty() { y } else { y.permute(order)?.contiguous()? }])
}
