//! Lowering: an ONNX graph becomes a plan of the compiled executor ([`crate::engine`]), one
//! builder function per operator.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::node::{Ctx, Node};
use super::{ops, Graph};
use crate::conv::{ConvParams, Dims};
use crate::engine::fuse;
use crate::engine::kernels::conv::Conv;
use crate::engine::kernels::dense::{BatchMatMul, Dense};
use crate::engine::kernels::elementwise::{BinOp, Binary, ChannelAffine, Operand, Repeat, Unary, UnaryFn};
use crate::engine::kernels::gather::{Gather, ZERO};
use crate::engine::kernels::norm::{LayerNorm, Softmax};
use crate::engine::kernels::pool::{AvgPool, MaxPool, MeanLast, Window};
use crate::engine::kernels::Act;
use crate::engine::{Engine, Op, Step};

/// Why a graph was not compiled (it then runs node by node).
pub(crate) type Refusal = String;
type Res<T> = std::result::Result<T, Refusal>;

/// What a value is to the plan.
#[derive(Clone)]
enum Kind {
    /// Computed from the input: a buffer.
    Data(usize),
    /// The same values for every sample, sized by the batch: a buffer filled without input.
    Repeat(usize),
    /// Known now.
    Const(Tensor),
    /// Shapes and other values only the node-by-node executor needs.
    Meta,
    /// The output of a layout operator that moves the batch off the first axis (attention's
    /// (3, N, heads, T, d) q/k/v stack): not materialized; the layout operators after it read
    /// through it. Its element indices at batch 2 (1 + base + element, 0 for zero) and the data
    /// buffers they point into.
    Deferred(Tensor, Vec<Source>),
}

/// A data buffer a layout operator reads: its buffer, the first index of its elements in the
/// operator's index space, and its elements at batch 2 and per sample.
#[derive(Clone, Copy)]
struct Source {
    buf: usize,
    base: usize,
    len2: usize,
    len: usize,
}

/// A value's shape as a function of the batch size n: (a·n, rest…).
#[derive(Clone, Debug)]
struct Shape {
    a: usize,
    rest: Vec<usize>,
}

impl Shape {
    fn len(&self) -> usize {
        self.a * self.rest.iter().product::<usize>()
    }
    /// The dimensions of one sample (a, rest…).
    fn sample(&self) -> Vec<usize> {
        let mut d = vec![self.a];
        d.extend(&self.rest);
        d
    }
}

struct Cx<'g> {
    graph: &'g Graph,
    /// Every value at batch sizes 2 and 3.
    two: HashMap<&'g str, Tensor>,
    three: HashMap<&'g str, Tensor>,
    kinds: HashMap<String, Kind>,
    lens: Vec<usize>,
    needs: Vec<bool>,
    steps: Vec<Step>,
    cpu: Device,
}

fn e<E: std::fmt::Display>(err: E) -> Refusal {
    err.to_string()
}

fn f32s(t: &Tensor) -> Res<Vec<f32>> {
    t.flatten_all().and_then(|t| t.to_dtype(DType::F32)).and_then(|t| t.to_vec1::<f32>()).map_err(e)
}

fn is_float(t: &Tensor) -> bool {
    matches!(t.dtype(), DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// Compiles `graph` for the input `input` (per-sample dims `sample`) and the logits `output`.
pub(crate) fn compile(graph: &Graph, input: &str, output: &str, sample: &[usize]) -> Res<Engine> {
    plan(graph, input, output, sample, true)
}

/// The plan with one kernel per operator, nothing fused: what bound propagation walks
/// ([`crate::bounds`]), where every activation must be a step of its own.
pub(crate) fn compile_unfused(graph: &Graph, input: &str, output: &str, sample: &[usize]) -> Res<Engine> {
    plan(graph, input, output, sample, false)
}

fn plan(graph: &Graph, input: &str, output: &str, sample: &[usize], fused: bool) -> Res<Engine> {
    let cpu = Device::Cpu;
    let probe = |n: usize| -> Res<HashMap<&str, Tensor>> {
        let len: usize = sample.iter().product();
        let values: Vec<f32> = (0..n * len).map(|i| ((i * 7919 + 13) % 1000) as f32 / 1000.0).collect();
        let mut dims = vec![n];
        dims.extend(sample);
        let x = Tensor::from_vec(values, dims, &cpu).map_err(e)?;
        graph.evaluate(&[(input, x)]).map_err(e)
    };
    let mut cx = Cx {
        graph,
        two: probe(2)?,
        three: probe(3)?,
        kinds: HashMap::new(),
        lens: Vec::new(),
        needs: Vec::new(),
        steps: Vec::new(),
        cpu: cpu.clone(),
    };
    let input_buf = cx.buffer(sample.iter().product(), true);
    cx.kinds.insert(input.to_string(), Kind::Data(input_buf));

    for node in graph.step_nodes() {
        let kinds: Vec<Option<Kind>> = node.inputs.iter().map(|i| cx.kind(i)).collect();
        let data = kinds.iter().any(|k| matches!(k, Some(Kind::Data(_) | Kind::Repeat(_) | Kind::Deferred(..))));
        if !data {
            for o in node.outputs.iter().filter(|o| !o.is_empty()) {
                cx.classify(node, o)?;
            }
            continue;
        }
        lower(&mut cx, node).map_err(|m| format!("node `{}` ({}): {m}", node.name, node.op))?;
    }
    let out = match cx.kind(output) {
        Some(Kind::Data(b)) => b,
        _ => return Err(format!("the logits `{output}` do not depend on the input")),
    };
    let Cx { mut steps, lens, mut needs, .. } = cx;
    // Only the steps the logits depend on.
    let mut wanted = vec![false; lens.len()];
    wanted[out] = true;
    let mut keep = vec![false; steps.len()];
    for (i, s) in steps.iter().enumerate().rev() {
        if wanted[s.output] {
            keep[i] = true;
            s.inputs.iter().for_each(|&b| wanted[b] = true);
        }
    }
    let mut k = keep.into_iter();
    steps.retain(|_| k.next().unwrap_or(false));
    for s in &steps {
        if !matches!(s.op, Op::Repeat(_)) {
            needs[s.output] = s.inputs.iter().any(|&b| needs[b]);
        }
    }
    let steps = if fused { fuse::fuse(steps, out) } else { steps };
    Ok(Engine::new(steps, lens, needs, input_buf, out))
}

impl<'g> Cx<'g> {
    fn buffer(&mut self, len: usize, needs: bool) -> usize {
        self.lens.push(len);
        self.needs.push(needs);
        self.lens.len() - 1
    }

    fn kind(&self, name: &str) -> Option<Kind> {
        if name.is_empty() {
            return None;
        }
        if let Some(k) = self.kinds.get(name) {
            return Some(k.clone());
        }
        self.graph.constant(name).map(|t| Kind::Const(t.clone()))
    }

    fn probe_pair(&self, name: &str) -> Res<(&Tensor, &Tensor)> {
        match (self.two.get(name), self.three.get(name)) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(format!("value `{name}` was not computed")),
        }
    }

    /// The shape of a value computed from the input: (a·n, rest…) at both probe sizes.
    fn shape(&self, name: &str) -> Res<Shape> {
        let (t2, t3) = self.probe_pair(name)?;
        let (d2, d3) = (t2.dims(), t3.dims());
        let ok =
            !d2.is_empty() && d2.len() == d3.len() && d2[1..] == d3[1..] && d2[0] % 2 == 0 && d3[0] == d2[0] / 2 * 3;
        if !ok || d2[0] == 0 {
            return Err(format!(
                "value `{name}` has shape {d2:?} at batch 2 and {d3:?} at batch 3: its first axis is not the batch"
            ));
        }
        Ok(Shape { a: d2[0] / 2, rest: d2[1..].to_vec() })
    }

    /// A value that does not depend on the input's numbers: a constant, a per-sample constant or
    /// shape arithmetic.
    fn classify(&mut self, node: &Node, name: &str) -> Res<()> {
        let (t2, t3) = self.probe_pair(name)?;
        if !is_float(t2) {
            self.kinds.insert(name.to_string(), Kind::Meta);
            return Ok(());
        }
        let (v2, v3) = (f32s(t2)?, f32s(t3)?);
        if t2.dims() == t3.dims() && v2 == v3 {
            self.kinds.insert(name.to_string(), Kind::Const(t2.clone()));
            return Ok(());
        }
        if let Ok(s) = self.shape(name) {
            let l = s.len();
            let same = v2.chunks(l).chain(v3.chunks(l)).all(|c| c == &v2[..l]);
            if same {
                let b = self.buffer(l, false);
                self.steps.push(Step {
                    op: Op::Repeat(Repeat { chunk: v2[..l].to_vec() }),
                    inputs: vec![],
                    output: b,
                    nodes: vec![node.name.clone()],
                    rows: 1,
                });
                self.kinds.insert(name.to_string(), Kind::Repeat(b));
                return Ok(());
            }
        }
        Err(format!("node `{}` ({}) computes `{name}` from the batch size", node.name, node.op))
    }

    fn ctx<'a>(&'a self, node: &'a Node) -> Ctx<'a> {
        Ctx { node, opset: self.graph.opset, device: &self.cpu }
    }

    /// The buffer of data input `i`.
    fn data(&self, node: &Node, i: usize) -> Res<usize> {
        match node.inputs.get(i).and_then(|n| self.kind(n)) {
            Some(Kind::Data(b) | Kind::Repeat(b)) => Ok(b),
            Some(Kind::Deferred(..)) => Err(format!("input {i} does not have the batch on its first axis")),
            _ => Err(format!("input {i} is not computed from the image")),
        }
    }

    /// Constant input `i`, if present.
    fn constant(&self, node: &Node, i: usize) -> Res<Option<Tensor>> {
        match node.inputs.get(i).and_then(|n| self.kind(n)) {
            None => Ok(None),
            Some(Kind::Const(t)) => Ok(Some(t)),
            Some(_) => Err(format!("input {i} must be a constant")),
        }
    }

    fn emit(&mut self, node: &Node, op: Op, inputs: Vec<usize>, rows: usize) -> Res<()> {
        self.emit_output(node, 0, op, inputs, rows)
    }

    fn emit_output(&mut self, node: &Node, k: usize, op: Op, inputs: Vec<usize>, rows: usize) -> Res<()> {
        let name = &node.outputs[k];
        let shape = self.shape(name)?;
        let needs = inputs.iter().any(|&b| self.needs[b]);
        let b = self.buffer(shape.len(), needs);
        self.steps.push(Step { op, inputs, output: b, nodes: vec![node.name.clone()], rows });
        self.kinds.insert(name.clone(), Kind::Data(b));
        Ok(())
    }
}

/// One builder per operator.
fn lower(cx: &mut Cx, node: &Node) -> Res<()> {
    for extra in node.outputs.iter().skip(1).filter(|o| !o.is_empty()) {
        if !matches!(node.op.as_str(), "Dropout" | "Split") {
            return Err(format!("its second output `{extra}` is used"));
        }
    }
    match node.op.as_str() {
        "Shape" | "Size" => {
            node.outputs.iter().for_each(|o| {
                cx.kinds.insert(o.clone(), Kind::Meta);
            });
            Ok(())
        }
        "Conv" => conv(cx, node),
        "BatchNormalization" => batch_norm(cx, node),
        "Relu" | "Clip" | "LeakyRelu" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Erf" | "Tanh" | "Neg" | "Gelu" => {
            unary(cx, node)
        }
        "Add" | "Sub" | "Mul" | "Div" => binary(cx, node),
        "Gemm" => gemm(cx, node),
        "MatMul" => matmul(cx, node),
        "GlobalAveragePool" => global_average_pool(cx, node),
        "ReduceMean" | "ReduceSum" => reduce(cx, node),
        "MaxPool" | "AveragePool" => pool(cx, node),
        "Softmax" => softmax(cx, node),
        "LayerNormalization" => layer_norm(cx, node),
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout" | "Cast" | "Transpose" | "Gather"
        | "Slice" | "Concat" | "Split" | "Expand" | "Tile" | "Pad" | "DepthToSpace" | "SpaceToDepth" => {
            layout(cx, node)
        }
        other => Err(format!("{other} has no compiled kernel")),
    }
}

fn pair(ctx: &Ctx, name: &str, default: usize) -> Res<[usize; 2]> {
    match ctx.ints(name) {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 0) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(format!("{name} = {v:?} is not two non-negative values")),
    }
}

/// [top, left, bottom, right], `auto_pad` resolved.
fn pads(ctx: &Ctx, kernel: [usize; 2], stride: [usize; 2], dil: [usize; 2], input: [usize; 2]) -> Res<[usize; 4]> {
    match ctx.string("auto_pad", "NOTSET").as_str() {
        "NOTSET" => match ctx.ints("pads") {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
            }
            Some(p) => Err(format!("pads = {p:?}")),
        },
        "VALID" => Ok([0; 4]),
        mode => {
            let mut p = [0; 4];
            for a in 0..2 {
                let out = input[a].div_ceil(stride[a]);
                let total = ((out - 1) * stride[a] + dil[a] * (kernel[a] - 1) + 1).saturating_sub(input[a]);
                let (small, big) = (total / 2, total - total / 2);
                (p[a], p[a + 2]) = if mode == "SAME_LOWER" { (big, small) } else { (small, big) };
            }
            Ok(p)
        }
    }
}

fn conv(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let w = cx.constant(node, 1)?.ok_or("the kernel is not a constant")?;
    let bias = cx.constant(node, 2)?.map(|b| f32s(&b)).transpose()?;
    let s = cx.shape(&node.inputs[0])?;
    let (&[c, h, wd], 1) = (s.rest.as_slice(), s.a) else {
        return Err(format!("input of shape {:?} (only 2-D convolutions are compiled)", s.sample()));
    };
    let ctx = cx.ctx(node);
    let wdims = w.dims().to_vec();
    if wdims.len() != 4 {
        return Err(format!("kernel of shape {wdims:?}"));
    }
    let (stride, dil) = (pair(&ctx, "strides", 1)?, pair(&ctx, "dilations", 1)?);
    let p = pads(&ctx, [wdims[2], wdims[3]], stride, dil, [h, wd])?;
    if stride[0] != stride[1] || dil[0] != dil[1] || p.iter().any(|&v| v != p[0]) {
        return Err(format!("strides {stride:?}, dilations {dil:?} and pads {p:?} differ between the axes"));
    }
    let groups = ctx.int("group", 1).max(1) as usize;
    let params = ConvParams { stride: stride[0], padding: p[0], dilation: dil[0], groups };
    let d = Dims::new(&[1, c, h, wd], &wdims, params).map_err(e)?;
    let out = cx.shape(&node.outputs[0])?;
    if out.rest != [d.o, d.oh, d.ow] {
        return Err(format!("output {:?} where the kernel gives {:?}", out.rest, [d.o, d.oh, d.ow]));
    }
    let op = Op::Conv(Conv::new(d, f32s(&w)?, bias));
    cx.emit(node, op, vec![x], 1)
}

fn batch_norm(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let get = |i| -> Res<Vec<f32>> { f32s(&cx.constant(node, i)?.ok_or("a parameter is missing")?) };
    let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let eps = cx.ctx(node).float("epsilon", 1e-5);
    if cx.ctx(node).int("training_mode", 0) != 0 {
        return Err("training mode".into());
    }
    let s = cx.shape(&node.inputs[0])?;
    if s.a != 1 || s.rest.is_empty() || s.rest[0] != gamma.len() {
        return Err(format!("input of shape {:?} for {} channels", s.sample(), gamma.len()));
    }
    let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
    let shift: Vec<f32> = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    let inner = s.rest[1..].iter().product();
    cx.emit(node, Op::Affine(ChannelAffine { scale, shift, inner, act: Act::None }), vec![x], 1)
}

fn unary(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let ctx = cx.ctx(node);
    let f = match node.op.as_str() {
        "Relu" => UnaryFn::Act(Act::Relu),
        "Clip" => {
            let bound = |i: usize, attr: &str, default: f32| -> Res<f32> {
                if cx.graph.opset < 11 {
                    return Ok(ctx.float(attr, default));
                }
                match cx.constant(node, i)? {
                    None => Ok(default),
                    Some(t) => Ok(*f32s(&t)?.first().ok_or("an empty bound")?),
                }
            };
            let (lo, hi) = (bound(1, "min", f32::NEG_INFINITY)?, bound(2, "max", f32::INFINITY)?);
            if lo == 0.0 && hi == f32::INFINITY {
                UnaryFn::Act(Act::Relu)
            } else {
                UnaryFn::Act(Act::Clip(lo, hi))
            }
        }
        "LeakyRelu" => {
            let a = ctx.float("alpha", 0.01);
            if a <= 0.0 {
                return Err(format!("alpha = {a}"));
            }
            UnaryFn::Act(Act::Leaky(a))
        }
        "Sigmoid" => UnaryFn::Sigmoid,
        "HardSigmoid" => UnaryFn::HardSigmoid(ctx.float("alpha", 0.2), ctx.float("beta", 0.5)),
        "HardSwish" => UnaryFn::HardSwish,
        "Erf" => UnaryFn::Erf,
        "Tanh" => UnaryFn::Tanh,
        "Neg" => UnaryFn::Neg,
        "Gelu" if ctx.string("approximate", "none") == "none" => UnaryFn::Gelu,
        other => return Err(format!("{other} with these attributes has no compiled kernel")),
    };
    let len = cx.shape(&node.inputs[0])?.len();
    cx.emit(node, Op::Unary(Unary { f, len }), vec![x], 1)
}

/// `t` broadcast to `dims` (numpy rules), as f32 values.
fn broadcast(t: &Tensor, dims: &[usize]) -> Res<Vec<f32>> {
    let mut shape = vec![1; dims.len().saturating_sub(t.rank())];
    shape.extend(t.dims());
    let t = t.reshape(shape).and_then(|t| t.broadcast_as(dims)).map_err(e)?;
    f32s(&t.contiguous().map_err(e)?)
}

/// Index tensor 1..=len (f32) of `dims`.
fn indices(dims: &[usize], base: usize, cpu: &Device) -> Res<Tensor> {
    let len: usize = dims.iter().product();
    let v: Vec<f32> = (0..len).map(|i| (base + i + 1) as f32).collect();
    Tensor::from_vec(v, dims, cpu).map_err(e)
}

/// Splits a map over both probe samples (values are 1 + an element index of an input at batch 2,
/// `in_len` per sample) into one sample's map, checking that each sample reads only itself.
fn per_sample(map: &[f32], out_len: usize, in_len: usize) -> Res<Vec<u32>> {
    let mut first = Vec::with_capacity(out_len);
    for (s, chunk) in map.chunks(out_len).enumerate() {
        for (e, &v) in chunk.iter().enumerate() {
            let i = v as usize - 1;
            let local = i.checked_sub(s * in_len).filter(|&l| l < in_len).ok_or("samples mix")?;
            if s == 0 {
                first.push(local as u32);
            } else if first[e] != local as u32 {
                return Err("samples are laid out differently".into());
            }
        }
    }
    Ok(first)
}

fn binary(cx: &mut Cx, node: &Node) -> Res<()> {
    let op = match node.op.as_str() {
        "Add" => BinOp::Add,
        "Sub" => BinOp::Sub,
        "Mul" => BinOp::Mul,
        _ => BinOp::Div,
    };
    let out = cx.shape(&node.outputs[0])?;
    let out2 = cx.two[node.outputs[0].as_str()].dims().to_vec();
    let (mut inputs, mut in_lens) = (Vec::new(), Vec::new());
    let mut operand = |i: usize| -> Res<Operand> {
        match cx.kind(&node.inputs[i]) {
            Some(Kind::Data(b) | Kind::Repeat(b)) => {
                let s = cx.shape(&node.inputs[i])?;
                let idx = indices(cx.two[node.inputs[i].as_str()].dims(), 0, &cx.cpu)?;
                let map = per_sample(&broadcast(&idx, &out2)?, out.len(), s.len())?;
                let identity = s.len() == out.len() && map.iter().enumerate().all(|(e, &m)| m as usize == e);
                inputs.push(b);
                in_lens.push(s.len());
                Ok(Operand::Data((!identity).then_some(map)))
            }
            Some(Kind::Const(t)) => {
                let v = broadcast(&t, &out2)?;
                let l = out.len();
                if v[..l] != v[l..] {
                    return Err("a constant that differs between samples".into());
                }
                Ok(Operand::Const(v[..l].to_vec()))
            }
            _ => Err(format!("input {i} is neither data nor a constant")),
        }
    };
    let (a, b) = (operand(0)?, operand(1)?);
    let len = out.len();
    cx.emit(node, Op::Binary(Binary { op, a, b, len, in_lens }), inputs, 1)
}

fn gemm(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let ctx = cx.ctx(node);
    if ctx.int("transA", 0) != 0 {
        return Err("transA".into());
    }
    let (alpha, beta) = (ctx.float("alpha", 1.0), ctx.float("beta", 1.0));
    let w = cx.constant(node, 1)?.ok_or("B is not a constant")?;
    let (r, c) = w.dims2().map_err(e)?;
    let wv = f32s(&w)?;
    let (k, m, mut wk) = if ctx.int("transB", 0) != 0 {
        (c, r, (0..c * r).map(|i| wv[(i % r) * c + i / r]).collect::<Vec<f32>>())
    } else {
        (r, c, wv)
    };
    wk.iter_mut().for_each(|v| *v *= alpha);
    let bias = match cx.constant(node, 2)? {
        None => vec![0.0; m],
        Some(t) => {
            if t.elem_count() != m && t.elem_count() != 1 {
                return Err(format!("C of shape {:?}", t.dims()));
            }
            broadcast(&t.flatten_all().map_err(e)?, &[m])?.iter().map(|v| v * beta).collect()
        }
    };
    let s = cx.shape(&node.inputs[0])?;
    if s.rest != [k] {
        return Err(format!("A of shape {:?} for a {k}×{m} weight", s.sample()));
    }
    cx.emit(node, Op::Dense(Dense::new(k, m, wk, bias, s.a)), vec![x], 1)
}

fn matmul(cx: &mut Cx, node: &Node) -> Res<()> {
    let a = cx.data(node, 0)?;
    let sa = cx.shape(&node.inputs[0])?;
    match cx.kind(&node.inputs[1]) {
        Some(Kind::Const(w)) => {
            let (k, m) = w.dims2().map_err(|_| format!("a constant right-hand side of shape {:?}", w.dims()))?;
            if sa.rest.last() != Some(&k) {
                return Err(format!("{:?} · {:?}", sa.sample(), w.dims()));
            }
            let rows = sa.len() / k;
            let op = Dense::new(k, m, f32s(&w)?, vec![0.0; m], rows);
            cx.emit(node, Op::Dense(op), vec![a], 1)
        }
        Some(Kind::Data(b) | Kind::Repeat(b)) => {
            let (da, db) =
                (cx.two[node.inputs[0].as_str()].dims().to_vec(), cx.two[node.inputs[1].as_str()].dims().to_vec());
            let r = da.len();
            if r < 3 || db.len() != r || da[..r - 2] != db[..r - 2] || da[r - 1] != db[r - 2] {
                return Err(format!("{da:?} · {db:?} (batched products need equal leading dimensions)"));
            }
            let items = da[..r - 2].iter().product::<usize>() / 2;
            let op = BatchMatMul { m: da[r - 2], k: da[r - 1], n: db[r - 1], items };
            cx.emit(node, Op::BatchMatMul(op), vec![a, b], 1)
        }
        _ => Err("the right-hand side is neither data nor a constant".into()),
    }
}

fn global_average_pool(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let s = cx.shape(&node.inputs[0])?;
    if s.rest.len() < 2 {
        return Err(format!("input of shape {:?}", s.sample()));
    }
    let inner: usize = s.rest[1..].iter().product();
    let op = MeanLast { inner, groups: s.len() / inner, scale: 1.0 / inner as f32 };
    cx.emit(node, Op::MeanLast(op), vec![x], 1)
}

fn reduce(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let s = cx.shape(&node.inputs[0])?;
    let rank = s.rest.len() + 1;
    let ctx = cx.ctx(node);
    let axes = match ctx.ints("axes") {
        Some(a) => a,
        None => match cx.constant(node, 1)? {
            Some(t) => t.to_dtype(DType::I64).and_then(|t| t.flatten_all()?.to_vec1::<i64>()).map_err(e)?,
            None => return Err("reduces every axis".into()),
        },
    };
    let mut axes: Vec<usize> =
        axes.iter().map(|&a| if a < 0 { (a + rank as i64) as usize } else { a as usize }).collect();
    axes.sort_unstable();
    let first = *axes.first().ok_or("no axes")?;
    if first == 0 || axes != (first..rank).collect::<Vec<_>>() {
        return Err(format!("axes {axes:?} are not the trailing axes"));
    }
    let inner: usize = s.rest[first - 1..].iter().product();
    let scale = if node.op == "ReduceMean" { 1.0 / inner as f32 } else { 1.0 };
    cx.emit(node, Op::MeanLast(MeanLast { inner, groups: s.len() / inner, scale }), vec![x], 1)
}

fn pool(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let (s, out) = (cx.shape(&node.inputs[0])?, cx.shape(&node.outputs[0])?);
    let (&[c, h, w], &[_, oh, ow], 1) = (s.rest.as_slice(), out.rest.as_slice(), s.a) else {
        return Err(format!("input of shape {:?} (only 2-D pooling is compiled)", s.sample()));
    };
    let ctx = cx.ctx(node);
    let k = pair(&ctx, "kernel_shape", 1)?;
    let (st, dil) = (pair(&ctx, "strides", 1)?, pair(&ctx, "dilations", 1)?);
    if dil != [1, 1] || ctx.int("storage_order", 0) != 0 {
        return Err("dilated windows or column-major indices".into());
    }
    let p = pads(&ctx, k, st, dil, [h, w])?;
    let win = Window { c, h, w, k, s: st, pad: [p[0], p[1]], oh, ow };
    let op = if node.op == "MaxPool" {
        Op::MaxPool(MaxPool { win })
    } else {
        if ctx.int("ceil_mode", 0) != 0 {
            return Err("ceil_mode".into());
        }
        Op::AvgPool(AvgPool { win, count_pad: ctx.int("count_include_pad", 0) != 0 })
    };
    cx.emit(node, op, vec![x], 1)
}

/// The last axis, or an error naming the axis asked for.
fn last_axis(cx: &Cx, node: &Node, default: i64) -> Res<Shape> {
    let s = cx.shape(&node.inputs[0])?;
    let rank = s.rest.len() as i64 + 1;
    let axis = cx.ctx(node).int("axis", default);
    if axis != -1 && axis != rank - 1 {
        return Err(format!("axis {axis} of a rank-{rank} value (only the last axis is compiled)"));
    }
    Ok(s)
}

fn softmax(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let s = last_axis(cx, node, if cx.graph.opset < 13 { 1 } else { -1 })?;
    let len = *s.rest.last().ok_or("a value without axes")?;
    cx.emit(node, Op::Softmax(Softmax { len }), vec![x], s.len() / len)
}

fn layer_norm(cx: &mut Cx, node: &Node) -> Res<()> {
    let x = cx.data(node, 0)?;
    let s = last_axis(cx, node, -1)?;
    let len = *s.rest.last().ok_or("a value without axes")?;
    let gamma = broadcast(&cx.constant(node, 1)?.ok_or("no scale")?, &[len])?;
    let beta = match cx.constant(node, 2)? {
        Some(b) => broadcast(&b, &[len])?,
        None => vec![0.0; len],
    };
    let eps = cx.ctx(node).float("epsilon", 1e-5);
    cx.emit(node, Op::LayerNorm(LayerNorm { len, gamma, beta, eps }), vec![x], s.len() / len)
}

/// Layout operators: run the operator once on element indices to read off which element each
/// output element copies.
fn layout(cx: &mut Cx, node: &Node) -> Res<()> {
    if node.op == "Cast" {
        let to = cx.ctx(node).int("to", 0) as i32;
        use super::proto::data_type as dt;
        if !matches!(to, dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | dt::BFLOAT16) {
            return Err("a cast to a non-float type".into());
        }
    }
    let def = ops::lookup(&node.op).ok_or("no operator")?;
    let mut inputs = Vec::new();
    let mut data: Vec<Source> = Vec::new();
    let mut base = 0usize;
    for name in &node.inputs {
        match cx.kind(name) {
            None => inputs.push(None),
            Some(Kind::Data(b) | Kind::Repeat(b)) => {
                let dims = cx.two[name.as_str()].dims().to_vec();
                let len2: usize = dims.iter().product();
                inputs.push(Some(indices(&dims, base, &cx.cpu)?));
                data.push(Source { buf: b, base, len2, len: cx.lens[b] });
                base += len2;
            }
            Some(Kind::Deferred(t, sources)) => {
                // Re-based into this operator's index space.
                let v: Vec<f32> = f32s(&t)?.into_iter().map(|x| if x == 0.0 { 0.0 } else { x + base as f32 }).collect();
                inputs.push(Some(Tensor::from_vec(v, t.dims(), &cx.cpu).map_err(e)?));
                let span = sources.iter().map(|s| s.base + s.len2).max().unwrap_or(0);
                for s in sources {
                    data.push(Source { base: s.base + base, ..s });
                }
                base += span;
            }
            Some(Kind::Const(t)) => inputs.push(Some(t)),
            Some(Kind::Meta) => inputs.push(Some(cx.two[name.as_str()].clone())),
        }
    }
    let outs = (def.run)(&cx.ctx(node), &inputs).map_err(e)?;
    for (k, (name, t)) in node.outputs.iter().zip(outs).enumerate() {
        if name.is_empty() || (node.op == "Dropout" && k > 0) {
            continue;
        }
        let Ok(out) = cx.shape(name) else {
            cx.kinds.insert(name.clone(), Kind::Deferred(t, data.clone()));
            continue;
        };
        let v = f32s(&t)?;
        if v.len() != 2 * out.len() {
            return Err(format!("output `{name}` has {} elements, expected {}", v.len(), 2 * out.len()));
        }
        let (mut which, mut index) = (Vec::with_capacity(out.len()), Vec::with_capacity(out.len()));
        for (s, chunk) in v.chunks(out.len()).enumerate() {
            for (e, &x) in chunk.iter().enumerate() {
                let (w, i) = if x == 0.0 {
                    (ZERO, 0)
                } else {
                    let g = x as usize - 1;
                    if x.fract() != 0.0 || x < 0.0 || g >= base {
                        return Err("an output element that is not a copy of an input element".into());
                    }
                    let j = data.iter().rposition(|d| d.base <= g).ok_or("bad index")?;
                    let d = data[j];
                    let local = (g - d.base).checked_sub(s * d.len).filter(|&i| i < d.len).ok_or("samples mix")?;
                    (j as u16, local as u32)
                };
                if s == 0 {
                    which.push(w);
                    index.push(i);
                } else if which[e] != w || index[e] != i {
                    return Err("samples are laid out differently".into());
                }
            }
        }
        // Inputs that the map never reads are not inputs of the kernel.
        let used: Vec<usize> = (0..data.len()).filter(|&j| which.contains(&(j as u16))).collect();
        let renumber: Vec<u16> =
            (0..data.len()).map(|j| used.iter().position(|&u| u == j).map_or(ZERO, |p| p as u16)).collect();
        which.iter_mut().filter(|w| **w != ZERO).for_each(|w| *w = renumber[*w as usize]);
        let identity = used.len() == 1
            && out.len() == data[used[0]].len
            && which.iter().all(|&w| w == 0)
            && index.iter().enumerate().all(|(e, &i)| i as usize == e);
        if identity {
            cx.kinds.insert(name.clone(), Kind::Data(data[used[0]].buf));
            continue;
        }
        let in_lens = used.iter().map(|&j| data[j].len).collect();
        let bufs = used.iter().map(|&j| data[j].buf).collect();
        cx.emit_output(node, k, Op::Gather(Gather { which, index, in_lens }), bufs, 1)?;
    }
    Ok(())
}
