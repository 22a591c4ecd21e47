//! Every differentiable ONNX operator of the executor against f64 central finite differences.
//!
//! Each case is a one-node model built in memory with `double` inputs, so candle computes in f64.
//! The autograd gradient of a fixed random linear functional of the outputs, Σ w ⊙ y, with
//! respect to every `double` graph input is compared with central differences (h = 1e-6).
//! Inputs are seeded and kept away from kinks (0 for ReLU-like ops, ties for max-like ops).
//! A registry operator with `Grad::Yes` and no case here fails `every_differentiable_op_is_covered`.

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use gauntlet_models::onnx::builder::{attr, tensor_bool, tensor_f32, tensor_f64, tensor_i64, Attr, ModelBuilder};
use gauntlet_models::onnx::ops::{Grad, REGISTRY};
use gauntlet_models::onnx::proto::{data_type as dt, AttributeProto, ModelProto};
use gauntlet_models::onnx::Graph;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const H: f64 = 1e-6;
const RTOL: f64 = 1e-6;

/// How a differentiated input's values are drawn.
#[derive(Clone)]
enum Gen {
    /// Uniform in [lo, hi).
    Uniform(f64, f64),
    /// Uniform in [lo, hi), at least `margin` away from every kink.
    Away(f64, f64, Vec<f64>, f64),
    /// A random permutation of evenly spaced values in (lo, hi): no ties anywhere.
    Distinct(f64, f64),
}

fn away0(lo: f64, hi: f64) -> Gen {
    Gen::Away(lo, hi, vec![0.0], 0.05)
}

enum In {
    /// A `double` graph input whose gradient is checked.
    Var(Vec<usize>, Gen),
    /// A constant (initializer) input of any type.
    Const(gauntlet_models::onnx::proto::TensorProto),
    /// An omitted optional input.
    Absent,
}

struct Case {
    op: &'static str,
    opset: i64,
    label: String,
    attrs: Vec<AttributeProto>,
    inputs: Vec<In>,
    outputs: usize,
    /// A Transpose with this permutation between input 0 and the node (a strided input).
    pre: Option<Vec<i64>>,
    /// A Transpose with this permutation after output 0 (a strided output gradient).
    post: Option<Vec<i64>>,
}

fn case(op: &'static str, opset: i64) -> Case {
    Case { op, opset, label: String::new(), attrs: Vec::new(), inputs: Vec::new(), outputs: 1, pre: None, post: None }
}

impl Case {
    fn label(mut self, l: &str) -> Self {
        self.label = l.to_string();
        self
    }
    fn var(self, dims: &[usize]) -> Self {
        self.var_gen(dims, Gen::Uniform(-1.0, 1.0))
    }
    fn var_gen(mut self, dims: &[usize], g: Gen) -> Self {
        self.inputs.push(In::Var(dims.to_vec(), g));
        self
    }
    fn cf64(mut self, dims: &[usize], v: Vec<f64>) -> Self {
        let name = format!("c{}", self.inputs.len());
        self.inputs.push(In::Const(tensor_f64(&name, dims, v)));
        self
    }
    fn cf32(mut self, dims: &[usize], v: Vec<f32>) -> Self {
        let name = format!("c{}", self.inputs.len());
        self.inputs.push(In::Const(tensor_f32(&name, dims, v)));
        self
    }
    fn ci64(mut self, dims: &[usize], v: Vec<i64>) -> Self {
        let name = format!("c{}", self.inputs.len());
        self.inputs.push(In::Const(tensor_i64(&name, dims, v)));
        self
    }
    fn cbool(mut self, dims: &[usize], v: Vec<bool>) -> Self {
        let name = format!("c{}", self.inputs.len());
        self.inputs.push(In::Const(tensor_bool(&name, dims, v)));
        self
    }
    fn absent(mut self) -> Self {
        self.inputs.push(In::Absent);
        self
    }
    fn int(mut self, n: &str, v: i64) -> Self {
        self.attrs.push(attr(n, Attr::Int(v)));
        self
    }
    fn ints(mut self, n: &str, v: &[i64]) -> Self {
        self.attrs.push(attr(n, Attr::Ints(v.to_vec())));
        self
    }
    fn float(mut self, n: &str, v: f32) -> Self {
        self.attrs.push(attr(n, Attr::Float(v)));
        self
    }
    fn string(mut self, n: &str, v: &str) -> Self {
        self.attrs.push(attr(n, Attr::Str(v.to_string())));
        self
    }
    fn outputs(mut self, n: usize) -> Self {
        self.outputs = n;
        self
    }
    fn pre(mut self, perm: &[i64]) -> Self {
        self.pre = Some(perm.to_vec());
        self
    }
    fn post(mut self, perm: &[i64]) -> Self {
        self.post = Some(perm.to_vec());
        self
    }

    fn name(&self) -> String {
        if self.label.is_empty() {
            format!("{} (opset {})", self.op, self.opset)
        } else {
            format!("{} {} (opset {})", self.op, self.label, self.opset)
        }
    }

    fn model(&self) -> ModelProto {
        let mut b = ModelBuilder::new(self.opset);
        let mut names = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            match input {
                In::Var(dims, _) => {
                    let n = format!("x{i}");
                    b = b.input(&n, dt::DOUBLE, dims);
                    names.push(n);
                }
                In::Const(t) => {
                    b = b.initializer(t.clone());
                    names.push(t.name.clone());
                }
                In::Absent => names.push(String::new()),
            }
        }
        if let Some(perm) = &self.pre {
            b = b.node("Transpose", &[&names[0]], &["pre"], vec![attr("perm", Attr::Ints(perm.clone()))]);
            names[0] = "pre".into();
        }
        let outs: Vec<String> = (0..self.outputs).map(|i| format!("y{i}")).collect();
        let mut node_outs = outs.clone();
        if let Some(perm) = &self.post {
            node_outs[0] = "post".into();
            b = b.node("Transpose", &["post"], &["y0"], vec![attr("perm", Attr::Ints(perm.clone()))]);
        }
        let ins: Vec<&str> = names.iter().map(String::as_str).collect();
        let outs_ref: Vec<&str> = node_outs.iter().map(String::as_str).collect();
        b = b.node(self.op, &ins, &outs_ref, self.attrs.clone());
        for o in &outs {
            b = b.output(o);
        }
        b.build()
    }
}

fn seed_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn draw(g: &Gen, n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    match g {
        Gen::Uniform(lo, hi) => (0..n).map(|_| rng.random_range(*lo..*hi)).collect(),
        Gen::Away(lo, hi, kinks, margin) => (0..n)
            .map(|_| loop {
                let v = rng.random_range(*lo..*hi);
                if kinks.iter().all(|k| (v - k).abs() > *margin) {
                    break v;
                }
            })
            .collect(),
        Gen::Distinct(lo, hi) => {
            let mut v: Vec<f64> = (0..n).map(|i| lo + (hi - lo) * (i as f64 + 0.5) / n as f64).collect();
            v.shuffle(rng);
            v
        }
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

/// Σ over the float outputs of Σ w ⊙ y.
fn functional(outs: &[Tensor], weights: &[Option<Tensor>]) -> Tensor {
    let mut total = Tensor::new(0f64, &Device::Cpu).unwrap();
    for (y, w) in outs.iter().zip(weights) {
        if let Some(w) = w {
            total = (total + (y * w).unwrap().sum_all().unwrap()).unwrap();
        }
    }
    total
}

/// Runs one case; returns the error message on a mismatch.
fn check(c: &Case) -> Result<(), String> {
    let name = c.name();
    let dev = Device::Cpu;
    let graph = Graph::from_proto(c.model(), Path::new("case.onnx"), &dev).map_err(|e| format!("{name}: {e}"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed_of(&name));
    let vars: Vec<(String, Vec<usize>, Vec<f64>)> = c
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(i, input)| match input {
            In::Var(dims, g) => Some((format!("x{i}"), dims.clone(), draw(g, dims.iter().product(), &mut rng))),
            _ => None,
        })
        .collect();
    let out_names: Vec<String> = (0..c.outputs).map(|i| format!("y{i}")).collect();
    let wanted: Vec<&str> = out_names.iter().map(String::as_str).collect();

    // Autograd.
    let var_tensors: Vec<Var> =
        vars.iter().map(|(_, d, v)| Var::from_vec(v.clone(), d.as_slice(), &dev).unwrap()).collect();
    let feeds: Vec<(&str, Tensor)> =
        vars.iter().zip(&var_tensors).map(|((n, _, _), v)| (n.as_str(), v.as_tensor().clone())).collect();
    let outs = graph.run(&feeds, &wanted).map_err(|e| format!("{name}: {e}"))?;
    let weights: Vec<Option<Tensor>> = outs
        .iter()
        .map(|y| {
            (y.dtype() == DType::F64).then(|| {
                let w: Vec<f64> = (0..y.elem_count()).map(|_| rng.random_range(-1.0..1.0)).collect();
                Tensor::from_vec(w, y.dims(), &dev).unwrap()
            })
        })
        .collect();
    if weights.iter().all(Option::is_none) {
        return Err(format!("{name}: no double output"));
    }
    let loss = functional(&outs, &weights);
    let grads = loss.backward().map_err(|e| format!("{name}: backward: {e}"))?;

    // Finite differences.
    let eval = |vals: &[Vec<f64>]| -> f64 {
        let feeds: Vec<(&str, Tensor)> = vars
            .iter()
            .zip(vals)
            .map(|((n, d, _), v)| (n.as_str(), Tensor::from_vec(v.clone(), d.as_slice(), &dev).unwrap()))
            .collect();
        let outs = graph.run(&feeds, &wanted).unwrap();
        functional(&outs, &weights).to_scalar::<f64>().unwrap()
    };
    let base: Vec<Vec<f64>> = vars.iter().map(|(_, _, v)| v.clone()).collect();
    let mut any_nonzero = false;
    for (k, ((vname, dims, v), var)) in vars.iter().zip(&var_tensors).enumerate() {
        let ad = match grads.get(var.as_tensor()) {
            Some(g) => {
                if g.dims() != dims.as_slice() {
                    return Err(format!("{name}: gradient of {vname} has shape {:?}, expected {dims:?}", g.dims()));
                }
                values(g)
            }
            None => vec![0.0; v.len()],
        };
        let mut fd = Vec::with_capacity(v.len());
        for i in 0..v.len() {
            let mut plus = base.clone();
            plus[k][i] += H;
            let mut minus = base.clone();
            minus[k][i] -= H;
            fd.push((eval(&plus) - eval(&minus)) / (2.0 * H));
        }
        let scale = fd.iter().chain(&ad).fold(0f64, |m, x| m.max(x.abs()));
        any_nonzero |= scale > 0.0;
        let (worst, err) = ad
            .iter()
            .zip(&fd)
            .map(|(a, f)| (a - f).abs())
            .enumerate()
            .fold((0, 0f64), |(bi, be), (i, e)| if e > be { (i, e) } else { (bi, be) });
        if err > RTOL * scale.max(1e-3) {
            return Err(format!(
                "{name}: input {vname}: autograd {:.9} vs finite differences {:.9} at element {worst} \
                 (error {err:.3e}, max |grad| {scale:.3e})",
                ad[worst], fd[worst]
            ));
        }
    }
    if !any_nonzero {
        return Err(format!("{name}: the gradient is zero everywhere; the case tests nothing"));
    }
    Ok(())
}

fn seq(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

fn cases() -> Vec<Case> {
    let mut c = Vec::new();
    let x4 = [2usize, 3, 5, 6];

    // Convolution.
    c.push(
        case("Conv", 13)
            .label("asymmetric pads, bias")
            .var(&[1, 2, 5, 6])
            .var(&[3, 2, 3, 2])
            .var(&[3])
            .ints("pads", &[1, 0, 0, 2]),
    );
    c.push(
        case("Conv", 13)
            .label("SAME_UPPER stride 2")
            .var(&[1, 2, 6, 5])
            .var(&[2, 2, 2, 3])
            .string("auto_pad", "SAME_UPPER")
            .ints("strides", &[2, 2]),
    );
    c.push(case("Conv", 13).label("SAME_LOWER").var(&[1, 1, 5, 5]).var(&[2, 1, 2, 2]).string("auto_pad", "SAME_LOWER"));
    c.push(
        case("Conv", 13)
            .label("unequal strides")
            .var(&[1, 2, 7, 6])
            .var(&[2, 2, 3, 3])
            .ints("strides", &[2, 1])
            .ints("pads", &[1, 1, 1, 1]),
    );
    c.push(
        case("Conv", 13)
            .label("dilations 2x2")
            .var(&[1, 2, 7, 7])
            .var(&[2, 2, 3, 3])
            .ints("dilations", &[2, 2])
            .ints("pads", &[2, 2, 2, 2]),
    );
    c.push(case("Conv", 13).label("dilations 1x2").var(&[1, 1, 6, 7]).var(&[2, 1, 2, 3]).ints("dilations", &[1, 2]));
    c.push(
        case("Conv", 13)
            .label("groups 2")
            .var(&[2, 4, 5, 5])
            .var(&[6, 2, 3, 3])
            .var(&[6])
            .int("group", 2)
            .ints("pads", &[1, 1, 1, 1]),
    );
    c.push(
        case("Conv", 13)
            .label("depthwise stride 2")
            .var(&[1, 3, 6, 6])
            .var(&[3, 1, 3, 3])
            .int("group", 3)
            .ints("strides", &[2, 2])
            .ints("pads", &[1, 1, 1, 1]),
    );
    c.push(
        case("Conv", 13)
            .label("1-D")
            .var(&[2, 2, 9])
            .var(&[3, 2, 3])
            .var(&[3])
            .ints("pads", &[2, 1])
            .ints("strides", &[2])
            .ints("dilations", &[2]),
    );

    // Transposed convolution.
    c.push(
        case("ConvTranspose", 13)
            .label("stride 2, pads")
            .var(&[1, 2, 3, 4])
            .var(&[2, 3, 3, 3])
            .var(&[3])
            .ints("strides", &[2, 2])
            .ints("pads", &[1, 0, 1, 2]),
    );
    c.push(
        case("ConvTranspose", 13)
            .label("output_padding, unequal strides")
            .var(&[1, 2, 3, 3])
            .var(&[2, 2, 3, 2])
            .ints("strides", &[2, 3])
            .ints("output_padding", &[1, 2]),
    );
    c.push(
        case("ConvTranspose", 13)
            .label("groups 2, dilation")
            .var(&[1, 4, 3, 3])
            .var(&[4, 1, 2, 2])
            .int("group", 2)
            .ints("dilations", &[2, 2]),
    );
    c.push(
        case("ConvTranspose", 13)
            .label("SAME_UPPER")
            .var(&[1, 1, 3, 3])
            .var(&[1, 2, 3, 3])
            .ints("strides", &[2, 2])
            .string("auto_pad", "SAME_UPPER"),
    );
    c.push(
        case("ConvTranspose", 13)
            .label("output_shape")
            .var(&[1, 1, 3, 3])
            .var(&[1, 1, 3, 3])
            .ints("strides", &[2, 2])
            .ints("output_shape", &[8, 7]),
    );
    c.push(
        case("ConvTranspose", 13)
            .label("1-D")
            .var(&[1, 2, 4])
            .var(&[2, 2, 3])
            .ints("strides", &[2])
            .ints("pads", &[1, 0]),
    );

    // Pooling.
    let d = |lo, hi| Gen::Distinct(lo, hi);
    c.push(
        case("MaxPool", 12)
            .label("simple")
            .var_gen(&[1, 2, 6, 6], d(-1.0, 1.0))
            .ints("kernel_shape", &[2, 2])
            .ints("strides", &[2, 2]),
    );
    c.push(
        case("MaxPool", 12)
            .label("overlap, pads")
            .var_gen(&[1, 2, 5, 5], d(-1.0, 1.0))
            .ints("kernel_shape", &[3, 3])
            .ints("strides", &[2, 2])
            .ints("pads", &[1, 1, 1, 1]),
    );
    c.push(
        case("MaxPool", 12)
            .label("asymmetric pads, ceil")
            .var_gen(&[1, 2, 6, 5], d(-1.0, 1.0))
            .ints("kernel_shape", &[3, 2])
            .ints("strides", &[2, 2])
            .ints("pads", &[0, 1, 1, 0])
            .int("ceil_mode", 1),
    );
    c.push(
        case("MaxPool", 12)
            .label("dilations")
            .var_gen(&[1, 1, 7, 7], d(-1.0, 1.0))
            .ints("kernel_shape", &[2, 2])
            .ints("dilations", &[2, 2]),
    );
    c.push(
        case("MaxPool", 12)
            .label("SAME_UPPER")
            .var_gen(&[1, 1, 5, 5], d(-1.0, 1.0))
            .ints("kernel_shape", &[3, 3])
            .ints("strides", &[2, 2])
            .string("auto_pad", "SAME_UPPER"),
    );
    c.push(
        case("MaxPool", 12)
            .label("1-D")
            .var_gen(&[2, 2, 9], d(-1.0, 1.0))
            .ints("kernel_shape", &[3])
            .ints("strides", &[2]),
    );
    c.push(
        case("AveragePool", 11)
            .label("simple")
            .var(&[1, 2, 6, 6])
            .ints("kernel_shape", &[2, 2])
            .ints("strides", &[2, 2]),
    );
    c.push(
        case("AveragePool", 11)
            .label("kernel 3 stride 2")
            .var(&[1, 2, 7, 6])
            .ints("kernel_shape", &[3, 3])
            .ints("strides", &[2, 2]),
    );
    for include in [0, 1] {
        c.push(
            case("AveragePool", 11)
                .label(&format!("pads, count_include_pad {include}"))
                .var(&[1, 2, 5, 5])
                .ints("kernel_shape", &[3, 3])
                .ints("pads", &[1, 1, 1, 1])
                .int("count_include_pad", include),
        );
        c.push(
            case("AveragePool", 11)
                .label(&format!("asymmetric pads, ceil, count_include_pad {include}"))
                .var(&[1, 1, 6, 5])
                .ints("kernel_shape", &[3, 2])
                .ints("strides", &[2, 2])
                .ints("pads", &[1, 0, 0, 1])
                .int("ceil_mode", 1)
                .int("count_include_pad", include),
        );
    }
    c.push(
        case("AveragePool", 11)
            .label("1-D")
            .var(&[1, 2, 8])
            .ints("kernel_shape", &[3])
            .ints("strides", &[2])
            .ints("pads", &[1, 1]),
    );
    c.push(case("GlobalAveragePool", 13).var(&[2, 3, 4, 5]));
    c.push(case("GlobalMaxPool", 13).var_gen(&[2, 3, 4, 5], d(-1.0, 1.0)));

    // Normalization.
    let pos = Gen::Uniform(0.5, 2.0);
    c.push(
        case("BatchNormalization", 15)
            .var(&x4)
            .var(&[3])
            .var(&[3])
            .var(&[3])
            .var_gen(&[3], pos.clone())
            .float("epsilon", 1e-3),
    );
    c.push(
        case("BatchNormalization", 15)
            .label("2-D input")
            .var(&[4, 3])
            .var(&[3])
            .var(&[3])
            .var(&[3])
            .var_gen(&[3], pos.clone()),
    );
    c.push(case("InstanceNormalization", 6).var(&x4).var(&[3]).var(&[3]));
    c.push(case("LayerNormalization", 17).label("axis -1").var(&[2, 3, 5]).var(&[5]).var(&[5]));
    c.push(
        case("LayerNormalization", 17)
            .label("axis 1, three outputs")
            .var(&[2, 3, 4])
            .var(&[3, 4])
            .var(&[3, 4])
            .int("axis", 1)
            .outputs(3),
    );
    c.push(
        case("GroupNormalization", 18)
            .label("per-group affine")
            .var(&[2, 6, 3, 2])
            .var(&[3])
            .var(&[3])
            .int("num_groups", 3),
    );
    c.push(
        case("GroupNormalization", 21)
            .label("per-channel affine")
            .var(&[2, 4, 3, 2])
            .var(&[4])
            .var(&[4])
            .int("num_groups", 2),
    );

    // Linear algebra.
    c.push(case("Gemm", 13).label("plain").var(&[3, 4]).var(&[4, 5]).var(&[3, 5]));
    c.push(
        case("Gemm", 13)
            .label("transA transB alpha beta")
            .var(&[4, 3])
            .var(&[5, 4])
            .var(&[5])
            .int("transA", 1)
            .int("transB", 1)
            .float("alpha", 0.7)
            .float("beta", 1.3),
    );
    c.push(
        case("Gemm", 13)
            .label("transB, scalar C")
            .var(&[2, 4])
            .var(&[3, 4])
            .var(&[1])
            .int("transB", 1)
            .float("beta", -0.5),
    );
    c.push(case("Gemm", 13).label("no C").var(&[2, 4]).var(&[4, 3]).float("alpha", 2.0));
    c.push(case("MatMul", 13).label("2-D").var(&[3, 4]).var(&[4, 2]));
    c.push(case("MatMul", 13).label("batched broadcast").var(&[2, 1, 3, 4]).var(&[3, 4, 2]));
    c.push(case("MatMul", 13).label("3-D by 2-D").var(&[2, 3, 4]).var(&[4, 5]));
    c.push(case("MatMul", 13).label("1-D by 3-D").var(&[4]).var(&[2, 4, 3]));
    c.push(case("MatMul", 13).label("3-D by 1-D").var(&[2, 3, 4]).var(&[4]));

    // Elementwise arithmetic.
    let nz = away0(-2.0, 2.0);
    for op in ["Add", "Sub", "Mul"] {
        c.push(case(op, 14).var(&[2, 3, 4]).var(&[3, 1]));
    }
    c.push(case("Div", 14).var(&[2, 3, 4]).var_gen(&[3, 1], Gen::Away(-2.0, 2.0, vec![0.0], 0.3)));
    c.push(case("Pow", 15).label("scalar exponent").var_gen(&[2, 3], Gen::Uniform(0.3, 2.0)).cf64(&[], vec![1.7]));
    c.push(case("Pow", 15).label("square").var(&[2, 3]).cf64(&[1], vec![2.0]));
    c.push(case("Pow", 15).label("cube, int exponent").var(&[2, 3]).ci64(&[], vec![3]));
    c.push(case("Pow", 15).label("sqrt").var_gen(&[2, 3], Gen::Uniform(0.3, 2.0)).cf64(&[], vec![0.5]));
    c.push(case("Pow", 15).label("tensor exponent").var_gen(&[2, 3], Gen::Uniform(0.3, 2.0)).var(&[3]));
    c.push(
        case("Pow", 15)
            .label("negative base, integer exponents")
            .var_gen(&[2, 3], nz.clone())
            .cf64(&[3], vec![2.0, 3.0, -1.0]),
    );
    c.push(
        case("Pow", 15)
            .label("variable scalar exponent")
            .var_gen(&[2, 3], Gen::Uniform(0.3, 2.0))
            .var_gen(&[], Gen::Uniform(0.5, 2.5)),
    );
    c.push(case("Sqrt", 13).var_gen(&[2, 3], Gen::Uniform(0.2, 2.0)));
    c.push(case("Neg", 13).var(&[2, 3]));
    c.push(case("Abs", 13).var_gen(&[2, 3], nz.clone()));
    c.push(case("Exp", 13).var(&[2, 3]));
    c.push(case("Log", 13).var_gen(&[2, 3], Gen::Uniform(0.2, 2.0)));
    c.push(case("Reciprocal", 13).var_gen(&[2, 3], Gen::Away(-2.0, 2.0, vec![0.0], 0.3)));
    c.push(case("Erf", 13).var(&[2, 3]));
    for op in ["Min", "Max"] {
        c.push(
            case(op, 13)
                .label("three inputs")
                .var_gen(&[2, 3], d(-1.0, 1.0))
                .var_gen(&[3], d(-0.9, 0.95))
                .var_gen(&[2, 1], d(-0.8, 0.9)),
        );
    }
    c.push(case("Sum", 13).var(&[2, 3]).var(&[3]).var(&[2, 1]));
    c.push(case("Mean", 13).var(&[2, 3]).var(&[3]).var(&[2, 1]));
    c.push(case("Where", 16).cbool(&[2, 3], vec![true, false, false, true, true, false]).var(&[2, 3]).var(&[3]));

    // Activations.
    c.push(case("Relu", 14).var_gen(&[2, 3, 4], nz.clone()));
    c.push(case("LeakyRelu", 16).var_gen(&[2, 3, 4], nz.clone()).float("alpha", 0.1));
    c.push(case("PRelu", 16).var_gen(&[2, 3, 2, 2], nz.clone()).var(&[3, 1, 1]));
    c.push(case("Elu", 6).var_gen(&[2, 3, 4], nz.clone()).float("alpha", 0.8));
    c.push(case("Selu", 6).var_gen(&[2, 3, 4], nz.clone()));
    c.push(case("Celu", 12).var_gen(&[2, 3, 4], nz.clone()).float("alpha", 1.5));
    c.push(case("Sigmoid", 13).var_gen(&[2, 3], Gen::Uniform(-4.0, 4.0)));
    c.push(case("HardSigmoid", 6).var_gen(&[3, 4], Gen::Away(-4.0, 4.0, vec![-2.5, 2.5], 0.05)));
    c.push(
        case("HardSigmoid", 6)
            .label("alpha beta")
            .var_gen(&[3, 4], Gen::Away(-1.5, 2.5, vec![-0.5, 1.5], 0.05))
            .float("alpha", 0.5)
            .float("beta", 0.25),
    );
    c.push(case("HardSwish", 14).var_gen(&[3, 4], Gen::Away(-5.0, 5.0, vec![-3.0, 3.0], 0.05)));
    c.push(case("Tanh", 13).var(&[2, 3]));
    c.push(case("Softplus", 1).var_gen(&[2, 3], Gen::Uniform(-4.0, 4.0)));
    c.push(case("Softsign", 1).var_gen(&[2, 3], nz.clone()));
    c.push(
        case("Clip", 13)
            .label("min and max")
            .var_gen(&[3, 4], Gen::Away(-1.0, 1.0, vec![-0.4, 0.6], 0.05))
            .cf64(&[], vec![-0.4])
            .cf64(&[], vec![0.6]),
    );
    c.push(
        case("Clip", 13)
            .label("max only")
            .var_gen(&[3, 4], Gen::Away(-1.0, 1.0, vec![0.2], 0.05))
            .absent()
            .cf64(&[], vec![0.2]),
    );
    c.push(
        case("Clip", 6)
            .label("attributes")
            .var_gen(&[3, 4], Gen::Away(-1.0, 1.0, vec![-0.5, 0.5], 0.05))
            .float("min", -0.5)
            .float("max", 0.5),
    );
    c.push(case("Gelu", 20).var_gen(&[2, 3], Gen::Uniform(-3.0, 3.0)));
    c.push(case("Gelu", 20).label("tanh").var_gen(&[2, 3], Gen::Uniform(-3.0, 3.0)).string("approximate", "tanh"));
    for op in ["Softmax", "LogSoftmax"] {
        c.push(
            case(op, 11).label("axis 1, coerced to 2-D").var_gen(&[2, 3, 4], Gen::Uniform(-2.0, 2.0)).int("axis", 1),
        );
        c.push(case(op, 11).label("default axis").var_gen(&[2, 3, 4], Gen::Uniform(-2.0, 2.0)));
        c.push(case(op, 13).label("axis -1").var_gen(&[2, 3, 4], Gen::Uniform(-2.0, 2.0)).int("axis", -1));
        c.push(case(op, 13).label("axis 1").var_gen(&[2, 3, 4], Gen::Uniform(-2.0, 2.0)).int("axis", 1));
    }

    // Reductions.
    let ops = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2"];
    for op in ops {
        let g = if op == "ReduceL2" { nz.clone() } else { d(-1.0, 1.0) };
        if op == "ReduceSum" {
            c.push(case(op, 13).label("axes input").var_gen(&[2, 3, 4], g.clone()).ci64(&[2], vec![0, -1]));
            c.push(
                case(op, 11)
                    .label("axes attribute, keepdims 0")
                    .var_gen(&[2, 3, 4], g.clone())
                    .ints("axes", &[1])
                    .int("keepdims", 0),
            );
        } else {
            c.push(case(op, 13).label("axes attribute").var_gen(&[2, 3, 4], g.clone()).ints("axes", &[0, 2]));
            c.push(
                case(op, 18)
                    .label("axes input, keepdims 0")
                    .var_gen(&[2, 3, 4], g.clone())
                    .ci64(&[1], vec![1])
                    .int("keepdims", 0),
            );
        }
        c.push(case(op, 13).label("all axes").var_gen(&[2, 3, 4], g.clone()).int("keepdims", 0));
    }

    // Shapes and data movement.
    c.push(case("Flatten", 13).var(&[2, 3, 2, 2]).int("axis", 2));
    c.push(case("Reshape", 14).var(&[2, 3, 4]).ci64(&[3], vec![0, -1, 2]));
    c.push(case("Transpose", 13).var(&[2, 3, 4]).ints("perm", &[2, 0, 1]));
    c.push(case("Squeeze", 13).var(&[2, 1, 3, 1]).ci64(&[1], vec![-1]));
    c.push(case("Unsqueeze", 13).var(&[2, 3]).ci64(&[2], vec![0, 3]));
    c.push(case("Concat", 13).var(&[2, 3]).var(&[2, 1]).var(&[2, 2]).int("axis", -1));
    c.push(case("Split", 13).label("sizes").var(&[2, 6]).ci64(&[3], vec![1, 3, 2]).int("axis", 1).outputs(3));
    c.push(case("Split", 18).label("num_outputs").var(&[5, 2]).int("num_outputs", 2).outputs(2));
    c.push(
        case("Slice", 13)
            .label("steps 2")
            .var(&[4, 7])
            .ci64(&[2], vec![1, 0])
            .ci64(&[2], vec![4, 7])
            .ci64(&[2], vec![0, 1])
            .ci64(&[2], vec![2, 3]),
    );
    c.push(
        case("Slice", 13)
            .label("negative step")
            .var(&[3, 8])
            .ci64(&[1], vec![-1])
            .ci64(&[1], vec![-8])
            .ci64(&[1], vec![1])
            .ci64(&[1], vec![-2]),
    );
    c.push(
        case("Slice", 13)
            .label("negative step, end past the start")
            .var(&[5, 2])
            .ci64(&[1], vec![10])
            .ci64(&[1], vec![-100])
            .ci64(&[1], vec![0])
            .ci64(&[1], vec![-3]),
    );
    c.push(case("Gather", 13).label("axis 0, repeated and negative").var(&[4, 3]).ci64(&[2, 2], vec![0, -1, 2, 0]));
    c.push(case("Gather", 13).label("axis 1, scalar index").var(&[2, 4, 3]).ci64(&[], vec![2]).int("axis", 1));
    c.push(case("Expand", 13).var(&[3, 1]).ci64(&[3], vec![2, 3, 4]));
    c.push(case("Tile", 13).var(&[2, 3]).ci64(&[2], vec![2, 3]));
    for mode in ["constant", "reflect", "edge"] {
        c.push(
            case("Pad", 13)
                .label(mode)
                .var(&[1, 2, 3, 4])
                .ci64(&[8], vec![0, 0, 2, 1, 0, 1, 1, 3])
                .cf64(&[], vec![0.5])
                .string("mode", mode),
        );
    }
    c.push(
        case("Pad", 18)
            .label("axes, negative pads")
            .var(&[3, 5])
            .ci64(&[2], vec![-1, 2])
            .absent()
            .ci64(&[1], vec![1])
            .string("mode", "reflect"),
    );
    c.push(case("Identity", 13).var(&[2, 3]));
    c.push(case("Dropout", 13).var(&[2, 3]).outputs(2));
    c.push(case("Cast", 13).var(&[2, 3]).int("to", dt::DOUBLE as i64));
    for (coord, size) in [("half_pixel", 7), ("align_corners", 7), ("asymmetric", 8), ("pytorch_half_pixel", 5)] {
        c.push(
            case("Resize", 13)
                .label(&format!("linear {coord}"))
                .var(&[1, 2, 3, 4])
                .absent()
                .absent()
                .ci64(&[4], vec![1, 2, 5, size])
                .string("mode", "linear")
                .string("coordinate_transformation_mode", coord),
        );
    }
    c.push(case("Resize", 13).label("nearest scales").var(&[1, 2, 3, 4]).absent().cf32(&[4], vec![1.0, 1.0, 2.0, 1.5]));
    c.push(
        case("Resize", 13)
            .label("nearest floor asymmetric")
            .var(&[1, 1, 3, 4])
            .absent()
            .cf32(&[4], vec![1.0, 1.0, 2.0, 2.0])
            .string("coordinate_transformation_mode", "asymmetric")
            .string("nearest_mode", "floor"),
    );
    c.push(
        case("Resize", 13)
            .label("downscale linear")
            .var(&[1, 1, 6, 6])
            .absent()
            .cf32(&[4], vec![1.0, 1.0, 0.5, 0.5])
            .string("mode", "linear"),
    );
    c.push(case("Upsample", 9).label("nearest").var(&[1, 2, 2, 3]).cf32(&[4], vec![1.0, 1.0, 2.0, 2.0]));
    c.push(
        case("Upsample", 9)
            .label("linear")
            .var(&[1, 2, 2, 3])
            .cf32(&[4], vec![1.0, 1.0, 2.0, 3.0])
            .string("mode", "linear"),
    );

    // Trigonometric and hyperbolic functions, thresholds, Mod.
    let unit = Gen::Uniform(-0.9, 0.9);
    for (op, g) in [
        ("Sin", Gen::Uniform(-3.0, 3.0)),
        ("Cos", Gen::Uniform(-3.0, 3.0)),
        ("Tan", Gen::Uniform(-1.2, 1.2)),
        ("Asin", unit.clone()),
        ("Acos", unit.clone()),
        ("Atan", Gen::Uniform(-3.0, 3.0)),
        ("Sinh", Gen::Uniform(-2.0, 2.0)),
        ("Cosh", Gen::Uniform(-2.0, 2.0)),
        ("Asinh", Gen::Uniform(-3.0, 3.0)),
        ("Acosh", Gen::Uniform(1.2, 3.0)),
        ("Atanh", unit.clone()),
    ] {
        c.push(case(op, 9).var_gen(&[2, 3], g));
    }
    c.push(case("ThresholdedRelu", 10).var_gen(&[3, 4], Gen::Away(-1.0, 1.0, vec![0.3], 0.05)).float("alpha", 0.3));
    c.push(
        case("Shrink", 9)
            .var_gen(&[3, 4], Gen::Away(-1.0, 1.0, vec![-0.4, 0.4], 0.05))
            .float("lambd", 0.4)
            .float("bias", 0.1),
    );
    c.push(
        case("Mod", 13)
            .label("fmod")
            .var_gen(&[2, 3], Gen::Uniform(-3.0, 3.0))
            .var_gen(&[3], Gen::Uniform(0.7, 1.3))
            .int("fmod", 1),
    );

    // Further reductions.
    for (op, g) in [
        ("ReduceL1", nz.clone()),
        ("ReduceSumSquare", Gen::Uniform(-1.0, 1.0)),
        ("ReduceLogSum", Gen::Uniform(0.2, 2.0)),
        ("ReduceLogSumExp", Gen::Uniform(-2.0, 2.0)),
        ("ReduceProd", Gen::Uniform(-1.5, 1.5)),
    ] {
        c.push(case(op, 13).label("axes attribute").var_gen(&[2, 3, 4], g.clone()).ints("axes", &[0, 2]));
        c.push(
            case(op, 18)
                .label("axes input, keepdims 0")
                .var_gen(&[2, 3, 4], g.clone())
                .ci64(&[1], vec![-1])
                .int("keepdims", 0),
        );
    }
    c.push(case("TopK", 11).label("largest").var_gen(&[3, 5], d(-1.0, 1.0)).ci64(&[1], vec![3]).outputs(2));
    c.push(
        case("TopK", 11)
            .label("smallest, axis 0")
            .var_gen(&[4, 3], d(-1.0, 1.0))
            .ci64(&[1], vec![2])
            .int("axis", 0)
            .int("largest", 0)
            .outputs(2),
    );

    // Normalization and data movement.
    c.push(
        case("LRN", 13)
            .label("size 3")
            .var(&[2, 5, 3, 3])
            .int("size", 3)
            .float("alpha", 0.5)
            .float("beta", 0.75)
            .float("bias", 1.5),
    );
    c.push(case("LRN", 13).label("size 4").var(&[1, 6, 2, 2]).int("size", 4).float("alpha", 0.3));
    c.push(case("MeanVarianceNormalization", 13).label("default axes").var(&[2, 3, 4, 2]));
    c.push(case("MeanVarianceNormalization", 13).label("axes 1").var(&[2, 3, 4]).ints("axes", &[1]));
    c.push(
        case("GatherElements", 13).label("axis 0, negative").var(&[3, 4]).ci64(&[2, 4], vec![0, -1, 2, 1, 2, 2, 0, -3]),
    );
    c.push(
        case("GatherElements", 13).label("axis 1, smaller").var(&[3, 4]).ci64(&[2, 2], vec![3, 0, 1, 1]).int("axis", 1),
    );
    c.push(case("DepthToSpace", 13).label("DCR").var(&[1, 8, 2, 3]).int("blocksize", 2));
    c.push(case("DepthToSpace", 13).label("CRD").var(&[1, 8, 2, 3]).int("blocksize", 2).string("mode", "CRD"));
    c.push(case("SpaceToDepth", 13).var(&[1, 2, 4, 6]).int("blocksize", 2));
    c.push(case("Trilu", 14).label("upper, k 1").var(&[2, 3, 4]).ci64(&[], vec![1]));
    c.push(case("Trilu", 14).label("lower, k -1").var(&[3, 4]).ci64(&[], vec![-1]).int("upper", 0));
    c.push(case("CastLike", 15).var(&[2, 3]).cf64(&[1], vec![0.0]));
    for (eq, shapes) in [
        ("bij,bjk->bik", vec![vec![2, 3, 4], vec![2, 4, 5]]),
        ("bhid,bhjd->bhij", vec![vec![2, 2, 3, 4], vec![2, 2, 5, 4]]),
        ("ij,jk->ik", vec![vec![3, 4], vec![4, 2]]),
        ("bi,bi->b", vec![vec![3, 4], vec![3, 4]]),
        ("ij,jk", vec![vec![3, 4], vec![4, 2]]),
        ("i,j->ij", vec![vec![3], vec![4]]),
        ("ii->i", vec![vec![4, 4]]),
        ("...ij->...ji", vec![vec![2, 3, 4]]),
        ("bij->", vec![vec![2, 3, 4]]),
        ("ij,jk,kl->il", vec![vec![2, 3], vec![3, 4], vec![4, 2]]),
        ("...ij,...jk->...ik", vec![vec![2, 1, 3, 4], vec![3, 4, 2]]),
        ("bn,anm,bm->ba", vec![vec![2, 3], vec![4, 3, 5], vec![2, 5]]),
    ] {
        let mut e = case("Einsum", 12).label(eq).string("equation", eq);
        for shape in shapes {
            e = e.var(&shape);
        }
        c.push(e);
    }

    // Strided (transposed) inputs and output gradients through the index-based builders.
    c.push(
        case("Gather", 13)
            .label("strided")
            .var(&[3, 4])
            .pre(&[1, 0])
            .ci64(&[3], vec![2, 0, 2])
            .int("axis", 1)
            .post(&[1, 0]),
    );
    c.push(
        case("Slice", 13)
            .label("narrow then step, strided")
            .var(&[6, 5])
            .pre(&[1, 0])
            .ci64(&[2], vec![1, 0])
            .ci64(&[2], vec![4, 6])
            .ci64(&[2], vec![0, 1])
            .ci64(&[2], vec![1, 2])
            .post(&[1, 0]),
    );
    c.push(
        case("Pad", 13)
            .label("reflect, strided")
            .var(&[4, 3])
            .pre(&[1, 0])
            .ci64(&[4], vec![1, 2, 1, 2])
            .string("mode", "reflect")
            .post(&[1, 0]),
    );
    c.push(
        case("Resize", 13)
            .label("linear, strided")
            .var(&[1, 1, 4, 3])
            .pre(&[0, 1, 3, 2])
            .absent()
            .cf32(&[4], vec![1.0, 1.0, 2.0, 1.5])
            .string("mode", "linear")
            .post(&[0, 1, 3, 2]),
    );
    c.push(
        case("MaxPool", 12)
            .label("ceil, strided")
            .var_gen(&[1, 2, 5, 6], d(-1.0, 1.0))
            .pre(&[0, 1, 3, 2])
            .ints("kernel_shape", &[3, 3])
            .ints("strides", &[2, 2])
            .int("ceil_mode", 1)
            .post(&[0, 1, 3, 2]),
    );
    c.push(
        case("MaxPool", 12)
            .label("simple, strided")
            .var_gen(&[1, 2, 4, 6], d(-1.0, 1.0))
            .pre(&[0, 1, 3, 2])
            .ints("kernel_shape", &[2, 2])
            .ints("strides", &[2, 2])
            .post(&[0, 1, 3, 2]),
    );
    c.push(
        case("AveragePool", 11)
            .label("exclude pad, strided")
            .var(&[1, 2, 5, 6])
            .pre(&[0, 1, 3, 2])
            .ints("kernel_shape", &[3, 3])
            .ints("pads", &[1, 1, 1, 1])
            .post(&[0, 1, 3, 2]),
    );
    c.push(case("GlobalMaxPool", 13).label("strided").var_gen(&[2, 3, 4, 5], d(-1.0, 1.0)).pre(&[0, 1, 3, 2]));
    c.push(
        case("Conv", 13)
            .label("unequal strides, strided")
            .var(&[1, 2, 6, 7])
            .pre(&[0, 1, 3, 2])
            .var(&[2, 2, 3, 3])
            .ints("strides", &[2, 1])
            .post(&[0, 1, 3, 2]),
    );
    c.push(
        case("ConvTranspose", 13)
            .label("strided")
            .var(&[1, 2, 3, 4])
            .pre(&[0, 1, 3, 2])
            .var(&[2, 3, 3, 3])
            .ints("strides", &[2, 2])
            .post(&[0, 1, 3, 2]),
    );
    c.push(case("Tile", 13).label("strided").var(&[2, 3]).pre(&[1, 0]).ci64(&[2], vec![2, 1]).post(&[1, 0]));
    c.push(case("Expand", 13).label("strided").var(&[1, 3]).pre(&[1, 0]).ci64(&[2], vec![3, 2]).post(&[1, 0]));
    c.push(
        case("Where", 16)
            .label("strided")
            .cbool(&[2, 3], vec![true, false, false, true, true, false])
            .var(&[2, 3])
            .var(&[3])
            .post(&[1, 0]),
    );
    c.push(case("Softmax", 13).label("strided").var(&[3, 4]).pre(&[1, 0]).int("axis", 0).post(&[1, 0]));
    c.push(case("ReduceMax", 13).label("strided").var_gen(&[3, 4], d(-1.0, 1.0)).pre(&[1, 0]).ints("axes", &[1]));
    c.push(case("MatMul", 13).label("strided").var(&[2, 3, 4]).pre(&[0, 2, 1]).var(&[3, 2]).post(&[0, 2, 1]));
    c.push(case("Gemm", 13).label("strided").var(&[4, 3]).pre(&[1, 0]).var(&[5, 4]).int("transB", 1).post(&[1, 0]));
    c.push(case("Split", 13).label("strided").var(&[4, 2]).pre(&[1, 0]).int("axis", 1).outputs(2));
    c.push(case("Concat", 13).label("strided").var(&[3, 2]).pre(&[1, 0]).var(&[2, 2]).int("axis", 1).post(&[1, 0]));
    c
}

#[test]
fn every_differentiable_op_matches_finite_differences() {
    let failures: Vec<String> = cases().iter().filter_map(|c| check(c).err()).collect();
    assert!(failures.is_empty(), "{} gradient check(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_differentiable_op_is_covered() {
    let covered: BTreeSet<&str> = cases().iter().map(|c| c.op).collect();
    let missing: Vec<&str> =
        REGISTRY.iter().filter(|d| d.grad == Grad::Yes && !covered.contains(d.name)).map(|d| d.name).collect();
    assert!(missing.is_empty(), "operators with Grad::Yes and no gradient check: {missing:?}");
}

/// Runs a one-node model on `double` inputs and returns output 0's values and shape.
fn forward(c: Case, feeds: Vec<Vec<f64>>) -> (Vec<f64>, Vec<usize>) {
    let graph = Graph::from_proto(c.model(), Path::new("case.onnx"), &Device::Cpu).unwrap();
    let names: Vec<String> = (0..c.inputs.len()).map(|i| format!("x{i}")).collect();
    let mut fed = Vec::new();
    let mut it = feeds.into_iter();
    for (i, input) in c.inputs.iter().enumerate() {
        if let In::Var(dims, _) = input {
            let v = it.next().expect("a value per variable input");
            fed.push((names[i].as_str(), Tensor::from_vec(v, dims.as_slice(), &Device::Cpu).unwrap()));
        }
    }
    let y = graph.run(&fed, &["y0"]).unwrap().remove(0);
    (values(&y), y.dims().to_vec())
}

fn assert_close(got: (Vec<f64>, Vec<usize>), want: &[f64], shape: &[usize], what: &str) {
    assert_eq!(got.1, shape, "{what}: shape");
    let ok = got.0.len() == want.len() && got.0.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12);
    assert!(ok, "{what}: got {:?}, expected {want:?}", got.0);
}

#[test]
fn forward_values_match_hand_computed_ones() {
    let x16 = seq(16).iter().map(|v| v + 1.0).collect::<Vec<_>>();
    // Conv: 2×2 ones kernel, stride 2, over 1..16.
    let conv = case("Conv", 13).var(&[1, 1, 4, 4]).cf64(&[1, 1, 2, 2], vec![1.0; 4]).ints("strides", &[2, 2]);
    assert_close(forward(conv, vec![x16.clone()]), &[14.0, 22.0, 46.0, 54.0], &[1, 1, 2, 2], "Conv stride 2");
    // MaxPool with ceil_mode: the partial windows at the border count.
    let mp = case("MaxPool", 12)
        .var(&[1, 1, 4, 4])
        .ints("kernel_shape", &[3, 3])
        .ints("strides", &[2, 2])
        .int("ceil_mode", 1);
    assert_close(forward(mp, vec![x16.clone()]), &[11.0, 12.0, 15.0, 16.0], &[1, 1, 2, 2], "MaxPool ceil_mode");
    // AveragePool over a zero-padded 2×2: with and without the pads in the divisor.
    let ap = |include: i64| {
        case("AveragePool", 11)
            .var(&[1, 1, 2, 2])
            .ints("kernel_shape", &[2, 2])
            .ints("pads", &[1, 1, 1, 1])
            .int("count_include_pad", include)
    };
    let x4 = vec![1.0, 2.0, 3.0, 4.0];
    assert_close(
        forward(ap(0), vec![x4.clone()]),
        &[1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0],
        &[1, 1, 3, 3],
        "AveragePool count_include_pad 0",
    );
    assert_close(
        forward(ap(1), vec![x4.clone()]),
        &[0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0],
        &[1, 1, 3, 3],
        "AveragePool count_include_pad 1",
    );
    // Softmax before opset 13 normalizes over everything from the axis on; from 13 along it.
    let l3 = 3f64.ln();
    let sm11 = case("Softmax", 11).var(&[1, 2, 2]).int("axis", 1);
    assert_close(
        forward(sm11, vec![vec![0.0, 0.0, 0.0, l3]]),
        &[1. / 6., 1. / 6., 1. / 6., 0.5],
        &[1, 2, 2],
        "Softmax-11",
    );
    let sm13 = case("Softmax", 13).var(&[1, 2, 2]).int("axis", 1);
    assert_close(forward(sm13, vec![vec![0.0, 0.0, 0.0, l3]]), &[0.5, 0.25, 0.5, 0.75], &[1, 2, 2], "Softmax-13");
    // Resize linear.
    let rz = |coord: &str, n: i64| {
        case("Resize", 13)
            .var(&[1, 1, 1, 2])
            .absent()
            .absent()
            .ci64(&[4], vec![1, 1, 1, n])
            .string("mode", "linear")
            .string("coordinate_transformation_mode", coord)
    };
    assert_close(
        forward(rz("align_corners", 3), vec![vec![1.0, 2.0]]),
        &[1.0, 1.5, 2.0],
        &[1, 1, 1, 3],
        "align_corners",
    );
    assert_close(
        forward(rz("half_pixel", 4), vec![vec![1.0, 2.0]]),
        &[1.0, 1.25, 1.75, 2.0],
        &[1, 1, 1, 4],
        "half_pixel",
    );
    // Pad reflect and edge.
    let pad = |mode: &str| case("Pad", 13).var(&[3]).ci64(&[2], vec![2, 2]).string("mode", mode);
    assert_close(forward(pad("reflect"), vec![vec![1.0, 2.0, 3.0]]), &[3., 2., 1., 2., 3., 2., 1.], &[7], "reflect");
    assert_close(forward(pad("edge"), vec![vec![1.0, 2.0, 3.0]]), &[1., 1., 1., 2., 3., 3., 3.], &[7], "edge");
    // Slice with a negative step.
    let sl = case("Slice", 13)
        .var(&[10])
        .ci64(&[1], vec![-1])
        .ci64(&[1], vec![-10])
        .ci64(&[1], vec![0])
        .ci64(&[1], vec![-3]);
    assert_close(forward(sl, vec![seq(10)]), &[9.0, 6.0, 3.0], &[3], "Slice negative step");
    // Gemm with both transposes, alpha and beta.
    let gemm = case("Gemm", 13)
        .var(&[2, 1])
        .cf64(&[3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
        .cf64(&[1], vec![1.0])
        .int("transA", 1)
        .int("transB", 1)
        .float("alpha", 2.0)
        .float("beta", 0.5);
    assert_close(forward(gemm, vec![vec![1.0, 2.0]]), &[2.5, 4.5, 6.5], &[1, 3], "Gemm");
    // Einsum diagonal and TopK values.
    let diag = case("Einsum", 12).var(&[2, 2]).string("equation", "ii->i");
    assert_close(forward(diag, vec![vec![1.0, 2.0, 3.0, 4.0]]), &[1.0, 4.0], &[2], "Einsum ii->i");
    let topk = case("TopK", 11).var(&[5]).ci64(&[1], vec![2]).outputs(2);
    assert_close(forward(topk, vec![vec![3.0, 1.0, 4.0, 1.0, 5.0]]), &[5.0, 4.0], &[2], "TopK");
}
