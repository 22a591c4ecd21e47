//! One graph node as the operators see it: attributes with ONNX's defaults, inputs, errors that
//! name the node.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::proto::{attribute_type as at, AttributeProto, NodeProto};
use super::tensor;
use crate::{ModelError, Result};

/// A node of the graph with its attributes indexed by name.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: HashMap<String, AttributeProto>,
}

impl Node {
    pub fn from_proto(p: &NodeProto, index: usize) -> Node {
        let name = if p.name.is_empty() { format!("{}_{index}", p.op_type) } else { p.name.clone() };
        Node {
            name,
            op: p.op_type.clone(),
            domain: p.domain.clone(),
            inputs: p.input.clone(),
            outputs: p.output.clone(),
            attrs: p.attribute.iter().map(|a| (a.name.clone(), a.clone())).collect(),
        }
    }
}

/// What an operator's builder function sees: the node, the opset and the device.
pub struct Ctx<'a> {
    pub node: &'a Node,
    pub opset: i64,
    pub device: &'a Device,
}

impl Ctx<'_> {
    /// An error about this node.
    pub fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Node { node: self.node.name.clone(), op: self.node.op.clone(), message: message.into() }
    }

    /// This node asks for something the executor does not do.
    pub fn unsupported(&self, message: impl Into<String>) -> ModelError {
        ModelError::NodeUnsupported { node: self.node.name.clone(), op: self.node.op.clone(), message: message.into() }
    }

    pub fn has(&self, name: &str) -> bool {
        self.node.attrs.contains_key(name)
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.node.attrs.get(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.node.attrs.get(name).map_or(default, |a| a.f)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.node.attrs.get(name).map(|a| a.ints.clone())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.node.attrs.get(name).map(|a| a.floats.clone())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.node.attrs.get(name).map_or(default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// A tensor-valued attribute (Constant's `value`, ConstantOfShape's `value`).
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(a) = self.node.attrs.get(name) else { return Ok(None) };
        if a.r#type != at::TENSOR {
            return Ok(None);
        }
        let Some(t) = &a.t else { return Ok(None) };
        tensor::decode(t, None, self.device).map(Some).map_err(|e| match e {
            tensor::DecodeError::Unsupported(m) => self.unsupported(m),
            tensor::DecodeError::Invalid(m) => self.err(m),
        })
    }

    /// Input `i`, which must be present.
    pub fn input<'t>(&self, inputs: &'t [Option<Tensor>], i: usize) -> Result<&'t Tensor> {
        inputs.get(i).and_then(|t| t.as_ref()).ok_or_else(|| self.err(format!("input {i} is missing")))
    }

    /// Optional input `i`.
    pub fn opt<'t>(&self, inputs: &'t [Option<Tensor>], i: usize) -> Option<&'t Tensor> {
        inputs.get(i).and_then(|t| t.as_ref())
    }

    /// An integer tensor input read as a vector (shapes, axes, indices).
    pub fn ints_input(&self, inputs: &[Option<Tensor>], i: usize) -> Result<Option<Vec<i64>>> {
        match self.opt(inputs, i) {
            None => Ok(None),
            Some(t) => Ok(Some(to_i64s(t)?)),
        }
    }

    /// A scalar (or one-element) input as f64.
    pub fn scalar_input(&self, inputs: &[Option<Tensor>], i: usize) -> Result<Option<f64>> {
        match self.opt(inputs, i) {
            None => Ok(None),
            Some(t) => {
                let v = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                match v.as_slice() {
                    [x] => Ok(Some(*x)),
                    _ => Err(self.err(format!("input {i} must hold one value, it has {}", v.len()))),
                }
            }
        }
    }

    /// Normalizes a possibly negative axis against `rank`.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize> {
        let r = rank as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if a < 0 || a >= r.max(1) {
            return Err(self.err(format!("axis {axis} is out of range for rank {rank}")));
        }
        Ok(a as usize)
    }
}

/// Any tensor's values as i64 (shape and index inputs).
pub fn to_i64s(t: &Tensor) -> Result<Vec<i64>> {
    let t = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::I64 => t.to_vec1::<i64>()?,
        DType::F32 | DType::F64 => t.to_dtype(DType::F64)?.to_vec1::<f64>()?.into_iter().map(|v| v as i64).collect(),
        _ => t.to_dtype(DType::I64)?.to_vec1::<i64>()?,
    })
}
