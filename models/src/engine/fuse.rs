//! Optimisation passes over the lowered plan: a batch norm after a convolution is folded into
//! its weights; a residual add and an activation after a convolution, and an activation after a
//! dense or per-channel affine kernel, move into that kernel's epilogue. A value is absorbed
//! only when its one consumer is the step fused into it.

use super::kernels::elementwise::{BinOp, Binary, Operand, Unary, UnaryFn};
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
    /// Add the constant of the Add at `j` (one value per output feature) to the bias of the dense
    /// kernel at `i`.
    Bias(Vec<f32>),
}

/// The constant operand of a binary step whose other operand is its one data input, unmapped.
fn constant_of(b: &Binary) -> Option<&[f32]> {
    match (&b.a, &b.b) {
        (Operand::Data(None), Operand::Const(c)) | (Operand::Const(c), Operand::Data(None)) => Some(c),
        _ => None,
    }
}

/// `c` is one row of `m` values repeated.
fn per_feature(c: &[f32], m: usize) -> Option<Vec<f32>> {
    (m > 0 && c.len().is_multiple_of(m) && c.chunks(m).all(|r| r == &c[..m])).then(|| c[..m].to_vec())
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
            (Op::Dense(d), Op::Binary(b)) if d.act == Act::None && b.op == BinOp::Add => {
                match constant_of(b).and_then(|c| per_feature(c, d.m)) {
                    Some(bias) => Fusion::Bias(bias),
                    None => continue,
                }
            }
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

/// Whether every value of a constant operand is `v` (to within rounding).
fn all_near(b: &Binary, v: f32) -> bool {
    constant_of(b).is_some_and(|c| !c.is_empty() && c.iter().all(|&x| (x - v).abs() <= 1e-6 * v.abs().max(1.0)))
}

/// Exact GELU as exporters write it, x · 0.5 · (1 + erf(x / √2)) in five steps (Div, Erf, Add,
/// Mul, Mul), becomes one kernel. Returns the index of the first step and of the four after it.
fn find_gelu(steps: &[Step], output: usize) -> Option<[usize; 5]> {
    let u = uses(steps, output);
    let consumer = |i: usize| -> Option<usize> {
        let o = steps[i].output;
        (u[o] == 1).then(|| steps.iter().position(|t| t.inputs.contains(&o))).flatten()
    };
    for (e, s) in steps.iter().enumerate() {
        let Op::Unary(Unary { f: UnaryFn::Erf, .. }) = s.op else { continue };
        let Some(d) = steps.iter().position(|t| t.output == s.inputs[0]) else { continue };
        let x = match &steps[d].op {
            Op::Binary(b)
                if b.op == BinOp::Div && matches!(b.b, Operand::Const(_)) && all_near(b, std::f32::consts::SQRT_2) =>
            {
                steps[d].inputs[0]
            }
            Op::Binary(b) if b.op == BinOp::Mul && all_near(b, std::f32::consts::FRAC_1_SQRT_2) => steps[d].inputs[0],
            _ => continue,
        };
        if u[steps[d].output] != 1 {
            continue;
        }
        let Some(a) = consumer(e) else { continue };
        let Op::Binary(add) = &steps[a].op else { continue };
        if add.op != BinOp::Add || !all_near(add, 1.0) {
            continue;
        }
        let Some(m1) = consumer(a) else { continue };
        let Op::Binary(mul) = &steps[m1].op else { continue };
        let pair = &steps[m1].inputs;
        let direct = matches!((&mul.a, &mul.b), (Operand::Data(None), Operand::Data(None)));
        if mul.op != BinOp::Mul || !direct || pair.len() != 2 || !pair.contains(&x) || !pair.contains(&steps[a].output)
        {
            continue;
        }
        let Some(m2) = consumer(m1) else { continue };
        let Op::Binary(half) = &steps[m2].op else { continue };
        if half.op != BinOp::Mul || !all_near(half, 0.5) {
            continue;
        }
        return Some([d, e, a, m1, m2]);
    }
    None
}

/// Applies every fusion until none is left.
pub(crate) fn fuse(mut steps: Vec<Step>, output: usize) -> Vec<Step> {
    while let Some(chain) = find_gelu(&steps, output) {
        let x = steps[chain[0]].inputs[0];
        let out = steps[chain[4]].output;
        let len = match &steps[chain[4]].op {
            Op::Binary(b) => b.len,
            _ => unreachable!("matched a binary step"),
        };
        let nodes: Vec<String> = chain.iter().flat_map(|&i| steps[i].nodes.clone()).collect();
        let gelu =
            Step { op: Op::Unary(Unary { f: UnaryFn::Gelu, len }), inputs: vec![x], output: out, nodes, rows: 1 };
        // The fused step takes the place of the last one, where every consumer is later.
        let mut gelu = Some(gelu);
        steps = steps
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| if i == chain[4] { gelu.take() } else { (!chain.contains(&i)).then_some(s) })
            .collect();
    }
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
            (Fusion::Bias(bias), Op::Dense(d), _) => d.bias.iter_mut().zip(bias).for_each(|(a, b)| *a += b),
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
