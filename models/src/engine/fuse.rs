//! Optimisation passes over the lowered plan: a batch norm after a convolution is folded into
//! its weights; a residual add and an activation after a convolution, and an activation after a
//! dense or per-channel affine kernel, move into that kernel's epilogue. A value is absorbed
//! only when its one consumer is the step fused into it.

use super::kernels::elementwise::{BinOp, Operand, UnaryFn};
use super::kernels::Act;
use super::{Op, Step};

/// How many times each buffer is read (the logits count once more).
fn uses(steps: &[Step], output: usize) -> Vec<usize> {
    let n = steps.iter().flat_map(|s| s.inputs.iter().chain([&s.output])).max().map_or(0, |m| m + 1).max(output + 1);
    let mut u = vec![0; n];
    steps.iter().flat_map(|s| &s.inputs).for_each(|&b| u[b] += 1);
    u[output] += 1;
    u
}

enum Fusion {
    /// Fold the batch norm at `j` into the convolution at `i`.
    Affine,
    /// Move the activation at `j` into the kernel at `i`.
    Act(Act),
    /// Add the other input of the Add at `j` in the convolution at `i`.
    Residual(usize),
}

fn find(steps: &[Step], output: usize) -> Option<(usize, usize, Fusion)> {
    let u = uses(steps, output);
    for (i, s) in steps.iter().enumerate() {
        if u[s.output] != 1 {
            continue;
        }
        let Some(j) = steps.iter().position(|t| t.inputs.contains(&s.output)) else { continue };
        let t = &steps[j];
        let fusion = match (&s.op, &t.op) {
            (Op::Conv(c), Op::Affine(_)) if c.act == Act::None && !c.residual => Fusion::Affine,
            (Op::Conv(c), Op::Unary(un)) if c.act == Act::None => match un.f {
                UnaryFn::Act(a) => Fusion::Act(a),
                _ => continue,
            },
            (Op::Dense(d), Op::Unary(un)) if d.act == Act::None => match un.f {
                UnaryFn::Act(a) => Fusion::Act(a),
                _ => continue,
            },
            (Op::Affine(f), Op::Unary(un)) if f.act == Act::None => match un.f {
                UnaryFn::Act(a) => Fusion::Act(a),
                _ => continue,
            },
            (Op::Conv(c), Op::Binary(b))
                if c.act == Act::None
                    && !c.residual
                    && b.op == BinOp::Add
                    && matches!((&b.a, &b.b), (Operand::Data(None), Operand::Data(None)))
                    && t.inputs.len() == 2 =>
            {
                let other = if t.inputs[0] == s.output { t.inputs[1] } else { t.inputs[0] };
                // The other operand must exist when the convolution runs.
                let ready = steps[..i].iter().any(|p| p.output == other) || !steps.iter().any(|p| p.output == other);
                if other == s.output || !ready {
                    continue;
                }
                Fusion::Residual(other)
            }
            _ => continue,
        };
        return Some((i, j, fusion));
    }
    None
}

/// Applies every fusion until none is left.
pub(crate) fn fuse(mut steps: Vec<Step>, output: usize) -> Vec<Step> {
    while let Some((i, j, fusion)) = find(&steps, output) {
        let consumer = steps.remove(j);
        let i = if j < i { i - 1 } else { i };
        let s = &mut steps[i];
        match (fusion, &mut s.op, consumer.op) {
            (Fusion::Affine, Op::Conv(c), Op::Affine(a)) => {
                c.fold_affine(&a.scale, &a.shift);
                c.act = a.act;
            }
            (Fusion::Act(a), Op::Conv(c), _) => c.act = a,
            (Fusion::Act(a), Op::Dense(d), _) => d.act = a,
            (Fusion::Act(a), Op::Affine(f), _) => f.act = a,
            (Fusion::Residual(r), Op::Conv(c), _) => {
                c.residual = true;
                s.inputs.push(r);
            }
            _ => unreachable!("fusion and kernels agree"),
        }
        s.output = consumer.output;
        s.nodes.extend(consumer.nodes);
    }
    steps
}
