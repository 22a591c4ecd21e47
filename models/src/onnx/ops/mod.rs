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

/// One registry entry.
#[derive(Clone, Copy)]
pub struct OpDef {
    pub name: &'static str,
    pub run: OpFn,
    pub grad: Grad,
}

const fn op(name: &'static str, run: OpFn, grad: Grad) -> OpDef {
    OpDef { name, run, grad }
}

use Grad::{Masked, NotNeeded, Yes};

/// Every operator the executor runs.
pub static REGISTRY: &[OpDef] = &[
    // convolution and pooling
    op("Conv", conv::conv, Yes),
    op("ConvTranspose", conv::conv_transpose, Yes),
    op("MaxPool", pool::max_pool, Yes),
    op("AveragePool", pool::average_pool, Yes),
    op("GlobalAveragePool", pool::global_average_pool, Yes),
    op("GlobalMaxPool", pool::global_max_pool, Yes),
    // normalization
    op("BatchNormalization", norm::batch_normalization, Yes),
    op("InstanceNormalization", norm::instance_normalization, Yes),
    op("LayerNormalization", norm::layer_normalization, Yes),
    op("GroupNormalization", norm::group_normalization, Yes),
    op("LRN", norm::lrn, Yes),
    op("MeanVarianceNormalization", norm::mean_variance_normalization, Yes),
    // linear algebra
    op("Gemm", linalg::gemm, Yes),
    op("MatMul", linalg::matmul, Yes),
    op("Einsum", einsum::einsum, Yes),
    // elementwise arithmetic
    op("Add", elementwise::add, Yes),
    op("Sub", elementwise::sub, Yes),
    op("Mul", elementwise::mul, Yes),
    op("Div", elementwise::div, Yes),
    op("Pow", elementwise::pow, Yes),
    op("Sqrt", elementwise::sqrt, Yes),
    op("Neg", elementwise::neg, Yes),
    op("Abs", elementwise::abs, Yes),
    op("Exp", elementwise::exp, Yes),
    op("Log", elementwise::log, Yes),
    op("Reciprocal", elementwise::reciprocal, Yes),
    op("Min", elementwise::min, Yes),
    op("Max", elementwise::max, Yes),
    op("Sum", elementwise::sum, Yes),
    op("Mean", elementwise::mean, Yes),
    op("Erf", elementwise::erf, Yes),
    op("Mod", math::modulo, Yes),
    op("Sin", math::sin, Yes),
    op("Cos", math::cos, Yes),
    op("Tan", math::tan, Yes),
    op("Asin", math::asin, Yes),
    op("Acos", math::acos, Yes),
    op("Atan", math::atan, Yes),
    op("Sinh", math::sinh, Yes),
    op("Cosh", math::cosh, Yes),
    op("Asinh", math::asinh, Yes),
    op("Acosh", math::acosh, Yes),
    op("Atanh", math::atanh, Yes),
    op("Floor", elementwise::floor, Masked),
    op("Ceil", elementwise::ceil, Masked),
    op("Round", elementwise::round, Masked),
    op("Sign", elementwise::sign, Masked),
    // comparisons and selection
    op("Equal", elementwise::equal, NotNeeded),
    op("Less", elementwise::less, NotNeeded),
    op("Greater", elementwise::greater, NotNeeded),
    op("LessOrEqual", elementwise::less_or_equal, NotNeeded),
    op("GreaterOrEqual", elementwise::greater_or_equal, NotNeeded),
    op("Not", elementwise::not, NotNeeded),
    op("And", elementwise::and, NotNeeded),
    op("Or", elementwise::or, NotNeeded),
    op("Xor", elementwise::xor, NotNeeded),
    op("IsNaN", math::is_nan, NotNeeded),
    op("IsInf", math::is_inf, NotNeeded),
    op("Where", elementwise::where_op, Yes),
    // activations
    op("Relu", activation::relu, Yes),
    op("LeakyRelu", activation::leaky_relu, Yes),
    op("PRelu", activation::prelu, Yes),
    op("Elu", activation::elu, Yes),
    op("Selu", activation::selu, Yes),
    op("Celu", activation::celu, Yes),
    op("Sigmoid", activation::sigmoid, Yes),
    op("HardSigmoid", activation::hard_sigmoid, Yes),
    op("HardSwish", activation::hard_swish, Yes),
    op("Tanh", activation::tanh, Yes),
    op("ThresholdedRelu", math::thresholded_relu, Yes),
    op("Shrink", math::shrink, Yes),
    op("Softplus", activation::softplus, Yes),
    op("Softsign", activation::softsign, Yes),
    op("Clip", activation::clip, Yes),
    op("Gelu", activation::gelu, Yes),
    op("Softmax", activation::softmax, Yes),
    op("LogSoftmax", activation::log_softmax, Yes),
    op("Hardmax", layout::hardmax, Masked),
    // reductions
    op("ReduceMean", reduce::reduce_mean, Yes),
    op("ReduceSum", reduce::reduce_sum, Yes),
    op("ReduceMax", reduce::reduce_max, Yes),
    op("ReduceMin", reduce::reduce_min, Yes),
    op("ReduceL2", reduce::reduce_l2, Yes),
    op("ReduceL1", reduce::reduce_l1, Yes),
    op("ReduceSumSquare", reduce::reduce_sum_square, Yes),
    op("ReduceLogSum", reduce::reduce_log_sum, Yes),
    op("ReduceLogSumExp", reduce::reduce_log_sum_exp, Yes),
    op("ReduceProd", reduce::reduce_prod, Yes),
    op("TopK", layout::top_k, Yes),
    op("ArgMax", reduce::arg_max, Masked),
    op("ArgMin", reduce::arg_min, Masked),
    // shapes and data movement
    op("Flatten", shape::flatten, Yes),
    op("Reshape", shape::reshape, Yes),
    op("Transpose", shape::transpose, Yes),
    op("Squeeze", shape::squeeze, Yes),
    op("Unsqueeze", shape::unsqueeze, Yes),
    op("Concat", shape::concat, Yes),
    op("Split", shape::split, Yes),
    op("Slice", shape::slice, Yes),
    op("Gather", shape::gather, Yes),
    op("GatherElements", layout::gather_elements, Yes),
    op("DepthToSpace", layout::depth_to_space, Yes),
    op("SpaceToDepth", layout::space_to_depth, Yes),
    op("Trilu", layout::trilu, Yes),
    op("Expand", shape::expand, Yes),
    op("Tile", shape::tile, Yes),
    op("Pad", shape::pad, Yes),
    op("Identity", shape::identity, Yes),
    op("Dropout", shape::dropout, Yes),
    op("Constant", shape::constant, NotNeeded),
    op("ConstantOfShape", shape::constant_of_shape, NotNeeded),
    op("Shape", shape::shape, NotNeeded),
    op("Size", shape::size, NotNeeded),
    op("Cast", shape::cast, Yes),
    op("CastLike", layout::cast_like, Yes),
    op("EyeLike", layout::eye_like, NotNeeded),
    op("OneHot", layout::one_hot, NotNeeded),
    op("NonZero", layout::non_zero, NotNeeded),
    op("Range", shape::range, NotNeeded),
    op("Resize", resize::resize, Yes),
    op("Upsample", resize::upsample, Yes),
    // quantization
    op("QuantizeLinear", quant::quantize_linear, Masked),
    op("DequantizeLinear", quant::dequantize_linear, Masked),
    op("DynamicQuantizeLinear", quant::dynamic_quantize_linear, Masked),
];

/// The registry entry of an operator of the default ONNX domain.
pub fn lookup(name: &str) -> Option<&'static OpDef> {
    REGISTRY.iter().find(|d| d.name == name)
}
