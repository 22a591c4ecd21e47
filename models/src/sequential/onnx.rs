//! A sequential model as an ONNX graph: one node (or two) per layer, weights as initializers,
//! the normalization as the graph's first nodes. This is the form in which a spec model reaches
//! the compiled executor, so a spec file and an ONNX file share one lowering, one set of kernels
//! and one backward pass; it is also a valid ONNX model that other tools read.

use candle_core::{DType, Tensor};

use super::{Layer, Sequential};
use crate::onnx::builder::{attr, tensor_f32, Attr, ModelBuilder};
use crate::onnx::proto::{data_type, ModelProto};
use crate::Result;

/// The opset the graph is written in.
const OPSET: i64 = 17;

/// The graph's input and output names.
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&x| x as i64).collect())
}

/// Adds `t` as an initializer named `name`, with shape `dims`.
fn constant(b: ModelBuilder, name: &str, dims: &[usize], t: &Tensor) -> Result<ModelBuilder> {
    Ok(b.initializer(tensor_f32(name, dims, values(t)?)))
}

impl Sequential {
    /// The model as an ONNX graph (float32, batch axis free), input `input`, output `logits`.
    pub fn to_onnx(&self) -> Result<ModelProto> {
        let [c, h, w] = self.input;
        let mut b = ModelBuilder::new(OPSET).batched_input(INPUT, data_type::FLOAT, &[c, h, w]);
        let mut x = INPUT.to_string();
        if let Some((mean, std)) = &self.normalize {
            b = constant(b, "mean", &[1, c, 1, 1], mean)?;
            b = constant(b, "std", &[1, c, 1, 1], std)?;
            b = b.node("Sub", &[&x, "mean"], &["centred"], vec![]).named("normalize.sub");
            b = b.node("Div", &["centred", "std"], &["normalized"], vec![]).named("normalize.div");
            x = "normalized".into();
        }
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let y = if i == last { OUTPUT.to_string() } else { format!("h{i}") };
            let name = format!("layer{i}.{}", layer.op_name());
            let p = |s: &str| format!("layer{i}.{s}");
            b = match layer {
                Layer::Conv2d { weight, bias, stride, padding, dilation, groups } => {
                    let mut b = constant(b, &p("weight"), weight.dims(), weight)?;
                    let mut inputs = vec![x.clone(), p("weight")];
                    if let Some(bias) = bias {
                        b = constant(b, &p("bias"), &[bias.elem_count()], bias)?;
                        inputs.push(p("bias"));
                    }
                    let attrs = vec![
                        attr("strides", ints(&[*stride; 2])),
                        attr("pads", ints(&[*padding; 4])),
                        attr("dilations", ints(&[*dilation; 2])),
                        attr("group", Attr::Int(*groups as i64)),
                    ];
                    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    b.node("Conv", &inputs, &[&y], attrs).named(&name)
                }
                Layer::Linear { weight, bias } if self.ranks[i] == 2 => {
                    let mut b = constant(b, &p("weight"), weight.dims(), weight)?;
                    let mut inputs = vec![x.clone(), p("weight")];
                    if let Some(bias) = bias {
                        b = constant(b, &p("bias"), &[bias.elem_count()], bias)?;
                        inputs.push(p("bias"));
                    }
                    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    b.node("Gemm", &inputs, &[&y], vec![attr("transB", Attr::Int(1))]).named(&name)
                }
                Layer::Linear { weight, bias } => {
                    // On the last axis of a higher-rank value: MatMul by Wᵀ, then the bias.
                    let (out, inp) = weight.dims2()?;
                    let b = constant(b, &p("weight_t"), &[inp, out], &weight.t()?)?;
                    match bias {
                        None => b.node("MatMul", &[&x, &p("weight_t")], &[&y], vec![]).named(&name),
                        Some(bias) => {
                            let b = constant(b, &p("bias"), &[out], bias)?;
                            b.node("MatMul", &[&x, &p("weight_t")], &[&p("product")], vec![])
                                .named(&name)
                                .node("Add", &[&p("product"), &p("bias")], &[&y], vec![])
                                .named(&p("bias_add"))
                        }
                    }
                }
                Layer::BatchNorm2d { scale, shift } => {
                    // Already folded to y = scale·x + shift: unit variance, zero mean, no epsilon.
                    let ch = scale.elem_count();
                    let ones = Tensor::ones(ch, DType::F32, &candle_core::Device::Cpu)?;
                    let b = constant(b, &p("scale"), &[ch], scale)?;
                    let b = constant(b, &p("shift"), &[ch], shift)?;
                    let b = constant(b, &p("mean"), &[ch], &ones.zeros_like()?)?;
                    let b = constant(b, &p("var"), &[ch], &ones)?;
                    let inputs = [x.as_str(), &p("scale"), &p("shift"), &p("mean"), &p("var")];
                    b.node("BatchNormalization", &inputs, &[&y], vec![attr("epsilon", Attr::Float(0.0))]).named(&name)
                }
                Layer::Relu => b.node("Relu", &[&x], &[&y], vec![]).named(&name),
                Layer::LeakyRelu(slope) => {
                    b.node("LeakyRelu", &[&x], &[&y], vec![attr("alpha", Attr::Float(*slope as f32))]).named(&name)
                }
                Layer::Tanh => b.node("Tanh", &[&x], &[&y], vec![]).named(&name),
                Layer::Sigmoid => b.node("Sigmoid", &[&x], &[&y], vec![]).named(&name),
                Layer::MaxPool2d(win) | Layer::AvgPool2d(win) => {
                    let [ph, pw] = win.padding;
                    let mut attrs = vec![
                        attr("kernel_shape", ints(&win.kernel)),
                        attr("strides", ints(&win.stride)),
                        attr("pads", ints(&[ph, pw, ph, pw])),
                    ];
                    let op = if matches!(layer, Layer::MaxPool2d(_)) {
                        "MaxPool"
                    } else {
                        // The spec's average pool divides by the full window, padding included.
                        attrs.push(attr("count_include_pad", Attr::Int(1)));
                        "AveragePool"
                    };
                    b.node(op, &[&x], &[&y], attrs).named(&name)
                }
                Layer::Flatten => b.node("Flatten", &[&x], &[&y], vec![attr("axis", Attr::Int(1))]).named(&name),
                Layer::Dropout => b.node("Identity", &[&x], &[&y], vec![]).named(&name),
            };
            x = y;
        }
        if self.layers.is_empty() {
            b = b.node("Identity", &[&x], &[OUTPUT], vec![]).named("output");
        }
        Ok(b.output(OUTPUT).build())
    }
}
