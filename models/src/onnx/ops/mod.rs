//! The operator registry: one builder function per ONNX operator, one line per operator here.
//!
//! A builder function takes the node's context and its input values (`None` for an omitted
//! optional input) and returns its outputs, built from candle operations so that candle's
//! autograd carries the input gradient through. Where a candle op's backward is wrong or missing
//! (max pooling, softmax without an axis, ReLU at 0) the builders use the ops of
//! [`crate::ops`] or compose elementary ops instead.

use candle_core::Tensor;

use super::node::Ctx;
use crate::Result;

mod activation;
mod conv;
mod einsum;
mod elementwise;
mod layout;
mod linalg;
mod math;
mod norm;
mod pool;
mod quant;
mod reduce;
mod resize;
mod shape;

/// An operator's builder function.
pub type OpFn = fn(&Ctx, &[Option<Tensor>]) -> Result<Vec<Tensor>>;

/// What the input gradient through an operator is worth to an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grad {
    /// Differentiable (almost everywhere) with a useful gradient.
    Yes,
    /// Outputs are indices, shapes or masks: nothing flows back and nothing needs to.
    NotNeeded,
    /// Piecewise constant or discrete: the gradient is zero or undefined, which masks gradients
    /// for a gradient attack (ArgMax, Round, Floor, Ceil, Sign, quantization).
    Masked,
}

/// Where an operator's values are computed when the model runs on a CUDA device. Every
/// operator runs there (constants and outputs stay on the device); the declaration says whether
/// a call also reads values back to the host, which costs a device synchronisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cuda {
    /// Built only from candle operations, each with a CUDA kernel (or cuBLAS): no host read.
    Device,
    /// On the device, but reads a small parameter input (a shape, axes, a scalar exponent, sizes)
    /// to the host on every call: a copy of a few values and a synchronisation.
    Parameters,
    /// Computes its values on the host, for every input or for some input types (integer
    /// arithmetic, piecewise-constant and inverse-trigonometric maps, data-dependent outputs,
    /// quantization), and copies the result back: a round-trip of the whole tensor per call.
    Host,
}

/// One registry entry.
#[derive(Clone, Copy)]
pub struct OpDef {
    pub name: &'static str,
    pub run: OpFn,
    pub grad: Grad,
    pub cuda: Cuda,
    /// The builder function's path within this module (`conv::conv`), for the declaration test.
    pub builder: &'static str,
}

macro_rules! op {
    ($name:literal, $module:ident :: $f:ident, $grad:ident, $cuda:ident) => {
        OpDef {
            name: $name,
            run: $module::$f,
            grad: Grad::$grad,
            cuda: Cuda::$cuda,
            builder: concat!(stringify!($module), "::", stringify!($f)),
        }
    };
}

/// Every operator the executor runs.
pub static REGISTRY: &[OpDef] = &[
    // convolution and pooling
    op!("Conv", conv::conv, Yes, Device),
    op!("ConvTranspose", conv::conv_transpose, Yes, Device),
    op!("MaxPool", pool::max_pool, Yes, Device),
    op!("AveragePool", pool::average_pool, Yes, Device),
    op!("GlobalAveragePool", pool::global_average_pool, Yes, Device),
    op!("GlobalMaxPool", pool::global_max_pool, Yes, Device),
    // normalization
    op!("BatchNormalization", norm::batch_normalization, Yes, Device),
    op!("InstanceNormalization", norm::instance_normalization, Yes, Device),
    op!("LayerNormalization", norm::layer_normalization, Yes, Device),
    op!("GroupNormalization", norm::group_normalization, Yes, Device),
    op!("LRN", norm::lrn, Yes, Device),
    op!("MeanVarianceNormalization", norm::mean_variance_normalization, Yes, Device),
    // linear algebra
    op!("Gemm", linalg::gemm, Yes, Device),
    op!("MatMul", linalg::matmul, Yes, Device),
    op!("Einsum", einsum::einsum, Yes, Device),
    // elementwise arithmetic
    op!("Add", elementwise::add, Yes, Device),
    op!("Sub", elementwise::sub, Yes, Device),
    op!("Mul", elementwise::mul, Yes, Device),
    op!("Div", elementwise::div, Yes, Device),
    op!("Pow", elementwise::pow, Yes, Parameters),
    op!("Sqrt", elementwise::sqrt, Yes, Device),
    op!("Neg", elementwise::neg, Yes, Device),
    op!("Abs", elementwise::abs, Yes, Host),
    op!("Exp", elementwise::exp, Yes, Device),
    op!("Log", elementwise::log, Yes, Device),
    op!("Reciprocal", elementwise::reciprocal, Yes, Device),
    op!("Min", elementwise::min, Yes, Device),
    op!("Max", elementwise::max, Yes, Device),
    op!("Sum", elementwise::sum, Yes, Device),
    op!("Mean", elementwise::mean, Yes, Device),
    op!("Erf", elementwise::erf, Yes, Device),
    op!("Mod", math::modulo, Yes, Host),
    op!("Sin", math::sin, Yes, Device),
    op!("Cos", math::cos, Yes, Device),
    op!("Tan", math::tan, Yes, Host),
    op!("Asin", math::asin, Yes, Host),
    op!("Acos", math::acos, Yes, Host),
    op!("Atan", math::atan, Yes, Host),
    op!("Sinh", math::sinh, Yes, Host),
    op!("Cosh", math::cosh, Yes, Host),
    op!("Asinh", math::asinh, Yes, Host),
    op!("Acosh", math::acosh, Yes, Host),
    op!("Atanh", math::atanh, Yes, Host),
    op!("Floor", elementwise::floor, Masked, Host),
    op!("Ceil", elementwise::ceil, Masked, Host),
    op!("Round", elementwise::round, Masked, Host),
    op!("Sign", elementwise::sign, Masked, Host),
    // comparisons and selection
    op!("Equal", elementwise::equal, NotNeeded, Device),
    op!("Less", elementwise::less, NotNeeded, Device),
    op!("Greater", elementwise::greater, NotNeeded, Device),
    op!("LessOrEqual", elementwise::less_or_equal, NotNeeded, Device),
    op!("GreaterOrEqual", elementwise::greater_or_equal, NotNeeded, Device),
    op!("Not", elementwise::not, NotNeeded, Device),
    op!("And", elementwise::and, NotNeeded, Device),
    op!("Or", elementwise::or, NotNeeded, Device),
    op!("Xor", elementwise::xor, NotNeeded, Device),
    op!("IsNaN", math::is_nan, NotNeeded, Host),
    op!("IsInf", math::is_inf, NotNeeded, Host),
    op!("Where", elementwise::where_op, Yes, Device),
    // activations
    op!("Relu", activation::relu, Yes, Device),
    op!("LeakyRelu", activation::leaky_relu, Yes, Device),
    op!("PRelu", activation::prelu, Yes, Device),
    op!("Elu", activation::elu, Yes, Device),
    op!("Selu", activation::selu, Yes, Device),
    op!("Celu", activation::celu, Yes, Device),
    op!("Sigmoid", activation::sigmoid, Yes, Device),
    op!("HardSigmoid", activation::hard_sigmoid, Yes, Device),
    op!("HardSwish", activation::hard_swish, Yes, Device),
    op!("Tanh", activation::tanh, Yes, Device),
    op!("ThresholdedRelu", math::thresholded_relu, Yes, Device),
    op!("Shrink", math::shrink, Yes, Host),
    op!("Softplus", activation::softplus, Yes, Device),
    op!("Softsign", activation::softsign, Yes, Device),
    op!("Clip", activation::clip, Yes, Parameters),
    op!("Gelu", activation::gelu, Yes, Device),
    op!("Softmax", activation::softmax, Yes, Device),
    op!("LogSoftmax", activation::log_softmax, Yes, Device),
    op!("Hardmax", layout::hardmax, Masked, Device),
    // reductions
    op!("ReduceMean", reduce::reduce_mean, Yes, Parameters),
    op!("ReduceSum", reduce::reduce_sum, Yes, Parameters),
    op!("ReduceMax", reduce::reduce_max, Yes, Parameters),
    op!("ReduceMin", reduce::reduce_min, Yes, Parameters),
    op!("ReduceL2", reduce::reduce_l2, Yes, Parameters),
    op!("ReduceL1", reduce::reduce_l1, Yes, Parameters),
    op!("ReduceSumSquare", reduce::reduce_sum_square, Yes, Parameters),
    op!("ReduceLogSum", reduce::reduce_log_sum, Yes, Parameters),
    op!("ReduceLogSumExp", reduce::reduce_log_sum_exp, Yes, Parameters),
    op!("ReduceProd", reduce::reduce_prod, Yes, Parameters),
    op!("TopK", layout::top_k, Yes, Host),
    op!("ArgMax", reduce::arg_max, Masked, Device),
    op!("ArgMin", reduce::arg_min, Masked, Device),
    // shapes and data movement
    op!("Flatten", shape::flatten, Yes, Device),
    op!("Reshape", shape::reshape, Yes, Parameters),
    op!("Transpose", shape::transpose, Yes, Device),
    op!("Squeeze", shape::squeeze, Yes, Parameters),
    op!("Unsqueeze", shape::unsqueeze, Yes, Parameters),
    op!("Concat", shape::concat, Yes, Device),
    op!("Split", shape::split, Yes, Parameters),
    op!("Slice", shape::slice, Yes, Parameters),
    op!("Gather", shape::gather, Yes, Parameters),
    op!("GatherElements", layout::gather_elements, Yes, Host),
    op!("DepthToSpace", layout::depth_to_space, Yes, Device),
    op!("SpaceToDepth", layout::space_to_depth, Yes, Device),
    op!("Trilu", layout::trilu, Yes, Parameters),
    op!("Expand", shape::expand, Yes, Parameters),
    op!("Tile", shape::tile, Yes, Parameters),
    op!("Pad", shape::pad, Yes, Parameters),
    op!("Identity", shape::identity, Yes, Device),
    op!("Dropout", shape::dropout, Yes, Parameters),
    op!("Constant", shape::constant, NotNeeded, Device),
    op!("ConstantOfShape", shape::constant_of_shape, NotNeeded, Parameters),
    op!("Shape", shape::shape, NotNeeded, Device),
    op!("Size", shape::size, NotNeeded, Device),
    op!("Cast", shape::cast, Yes, Host),
    op!("CastLike", layout::cast_like, Yes, Host),
    op!("EyeLike", layout::eye_like, NotNeeded, Device),
    op!("OneHot", layout::one_hot, NotNeeded, Host),
    op!("NonZero", layout::non_zero, NotNeeded, Host),
    op!("Range", shape::range, NotNeeded, Parameters),
    op!("Resize", resize::resize, Yes, Parameters),
    op!("Upsample", resize::upsample, Yes, Parameters),
    // quantization
    op!("QuantizeLinear", quant::quantize_linear, Masked, Host),
    op!("DequantizeLinear", quant::dequantize_linear, Masked, Host),
    op!("DynamicQuantizeLinear", quant::dynamic_quantize_linear, Masked, Host),
];

/// The registry entry of an operator of the default ONNX domain.
pub fn lookup(name: &str) -> Option<&'static OpDef> {
    REGISTRY.iter().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    //! The CUDA declarations against the builders' source: an operator declared [`Cuda::Device`]
    //! must not read values back to the host, and one declared otherwise must.

    use std::collections::{BTreeMap, BTreeSet};

    use super::{Cuda, REGISTRY};

    /// Every file a builder can reach, by module name.
    const SOURCES: &[(&str, &str)] = &[
        ("activation", include_str!("activation.rs")),
        ("conv", include_str!("conv.rs")),
        ("einsum", include_str!("einsum.rs")),
        ("elementwise", include_str!("elementwise.rs")),
        ("layout", include_str!("layout.rs")),
        ("linalg", include_str!("linalg.rs")),
        ("math", include_str!("math.rs")),
        ("norm", include_str!("norm.rs")),
        ("pool", include_str!("pool.rs")),
        ("quant", include_str!("quant.rs")),
        ("reduce", include_str!("reduce.rs")),
        ("resize", include_str!("resize.rs")),
        ("shape", include_str!("shape.rs")),
        ("node", include_str!("../node.rs")),
    ];

    /// Calls that copy tensor values to the host.
    const HOST_READS: &[&str] =
        &[".to_vec0", ".to_vec1", ".to_vec2", ".to_vec3", ".to_scalar", ".ints_input(", ".scalar_input("];

    type Key = (&'static str, String);

    /// The functions of one file: name → body (up to the next item at column 0).
    fn functions(src: &'static str) -> Vec<(String, &'static str)> {
        let mut starts = Vec::new();
        let mut at = 0;
        for line in src.split_inclusive('\n') {
            let rest = ["pub(super) ", "pub(crate) ", "pub "].iter().find_map(|p| line.strip_prefix(p)).unwrap_or(line);
            if let Some(sig) = rest.strip_prefix("fn ") {
                let name: String = sig.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                starts.push((name, at));
            }
            at += line.len();
        }
        (0..starts.len())
            .map(|i| {
                let end = starts.get(i + 1).map_or(src.len(), |s| s.1);
                (starts[i].0.clone(), &src[starts[i].1..end])
            })
            .collect()
    }

    /// The plain (non-method) calls in `body`: `name(` or `module::name(`.
    fn calls(body: &str) -> Vec<(Option<String>, String)> {
        let b = body.as_bytes();
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let mut out = Vec::new();
        let after_signature = body.find('{').unwrap_or(0);
        for i in after_signature..b.len() {
            if b[i] != b'(' || i == 0 || !ident(b[i - 1]) {
                continue;
            }
            let mut s = i;
            while s > 0 && ident(b[s - 1]) {
                s -= 1;
            }
            let name = body[s..i].to_string();
            if s > 0 && b[s - 1] == b'.' {
                continue;
            }
            let module = (s >= 2 && &b[s - 2..s] == b"::").then(|| {
                let mut m = s - 2;
                while m > 0 && ident(b[m - 1]) {
                    m -= 1;
                }
                body[m..s - 2].to_string()
            });
            out.push((module, name));
        }
        out
    }

    /// Which functions reach a host read, directly or through functions of these files.
    fn host_readers() -> BTreeSet<Key> {
        let mut defs: BTreeMap<Key, &'static str> = BTreeMap::new();
        for (module, src) in SOURCES {
            let src = src.split("\n#[cfg(test)]").next().unwrap();
            for (name, body) in functions(src) {
                defs.insert((module, name), body);
            }
        }
        let resolve = |from: &'static str, module: &Option<String>, name: &str| -> Option<Key> {
            match module {
                Some(m) => SOURCES.iter().find(|(n, _)| n == m).map(|(n, _)| (*n, name.to_string())),
                None if defs.contains_key(&(from, name.to_string())) => Some((from, name.to_string())),
                None => {
                    let mut found = defs.keys().filter(|(_, n)| n == name);
                    match (found.next(), found.next()) {
                        (Some(k), None) => Some(k.clone()),
                        _ => None,
                    }
                }
            }
        };
        let mut readers: BTreeSet<Key> = defs
            .iter()
            .filter(|(_, body)| HOST_READS.iter().any(|t| body.contains(t)))
            .map(|(k, _)| k.clone())
            .collect();
        loop {
            let more: Vec<Key> = defs
                .iter()
                .filter(|(k, _)| !readers.contains(*k))
                .filter(|(k, body)| {
                    calls(body)
                        .iter()
                        .any(|(m, n)| resolve(k.0, m, n).is_some_and(|c| c != **k && readers.contains(&c)))
                })
                .map(|(k, _)| k.clone())
                .collect();
            if more.is_empty() {
                return readers;
            }
            readers.extend(more);
        }
    }

    #[test]
    fn every_operator_declares_what_it_does_on_cuda() {
        let readers = host_readers();
        let mut wrong = Vec::new();
        for d in REGISTRY {
            let (module, f) = d.builder.split_once("::").unwrap();
            let module = SOURCES.iter().find(|(m, _)| *m == module).map(|(m, _)| *m).expect("builder module listed");
            let reads = readers.contains(&(module, f.to_string()));
            if reads != (d.cuda != Cuda::Device) {
                wrong.push(format!("{} ({}): declared {:?}, reads the host: {reads}", d.name, d.builder, d.cuda));
            }
        }
        assert!(wrong.is_empty(), "CUDA declarations that do not match the builders:\n{}", wrong.join("\n"));
        // The scan itself finds what it must: a direct read, and one through a helper.
        assert!(readers.contains(&("layout", "non_zero".to_string())));
        assert!(readers.contains(&("elementwise", "floor".to_string())));
        assert!(!readers.contains(&("conv", "conv".to_string())));
    }

    #[test]
    fn the_registry_names_each_operator_once() {
        let names: BTreeSet<&str> = REGISTRY.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), REGISTRY.len());
    }
}
