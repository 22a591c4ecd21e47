//! Small ONNX models built in memory: a graph of a few nodes with typed inputs, initializers and
//! attributes, for tests and diagnostics that need a model without a file.

use super::proto::{
    attribute_type as at, data_type as dt, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Tensor(Box<TensorProto>),
}

/// A named attribute.
pub fn attr(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto { name: name.to_string(), ..Default::default() };
    match value {
        Attr::Int(v) => (a.r#type, a.i) = (at::INT, v),
        Attr::Float(v) => (a.r#type, a.f) = (at::FLOAT, v),
        Attr::Ints(v) => (a.r#type, a.ints) = (at::INTS, v),
        Attr::Floats(v) => (a.r#type, a.floats) = (at::FLOATS, v),
        Attr::Str(v) => (a.r#type, a.s) = (at::STRING, v.into_bytes()),
        Attr::Tensor(v) => (a.r#type, a.t) = (at::TENSOR, Some(*v)),
    }
    a
}

fn tensor(name: &str, dims: &[usize], data_type: i32) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type,
        ..Default::default()
    }
}

/// A `double` tensor.
pub fn tensor_f64(name: &str, dims: &[usize], data: Vec<f64>) -> TensorProto {
    TensorProto { double_data: data, ..tensor(name, dims, dt::DOUBLE) }
}

/// A `float` tensor.
pub fn tensor_f32(name: &str, dims: &[usize], data: Vec<f32>) -> TensorProto {
    TensorProto { float_data: data, ..tensor(name, dims, dt::FLOAT) }
}

/// An `int64` tensor.
pub fn tensor_i64(name: &str, dims: &[usize], data: Vec<i64>) -> TensorProto {
    TensorProto { int64_data: data, ..tensor(name, dims, dt::INT64) }
}

/// A `bool` tensor.
pub fn tensor_bool(name: &str, dims: &[usize], data: Vec<bool>) -> TensorProto {
    TensorProto { int32_data: data.into_iter().map(i32::from).collect(), ..tensor(name, dims, dt::BOOL) }
}

fn value_info(name: &str, elem_type: i32, dims: Option<&[usize]>) -> ValueInfoProto {
    let shape = dims.map(|d| TensorShapeProto {
        dim: d.iter().map(|&v| Dimension { dim_value: Some(v as i64), dim_param: None }).collect(),
    });
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto { tensor_type: Some(TypeProtoTensor { elem_type, shape }) }),
        doc_string: String::new(),
    }
}

/// A model under construction.
#[derive(Debug, Clone)]
pub struct ModelBuilder {
    opset: i64,
    graph: GraphProto,
}

impl ModelBuilder {
    /// An empty graph importing the default domain at `opset`.
    pub fn new(opset: i64) -> ModelBuilder {
        ModelBuilder { opset, graph: GraphProto { name: "built".into(), ..Default::default() } }
    }

    /// A graph input of ONNX element type `elem_type` (see [`super::proto::data_type`]).
    pub fn input(mut self, name: &str, elem_type: i32, dims: &[usize]) -> Self {
        self.graph.input.push(value_info(name, elem_type, Some(dims)));
        self
    }

    /// A graph input whose first axis is a free batch axis named `batch`, then `dims`.
    pub fn batched_input(mut self, name: &str, elem_type: i32, dims: &[usize]) -> Self {
        let mut v = value_info(name, elem_type, Some(dims));
        if let Some(shape) = v.r#type.as_mut().and_then(|t| t.tensor_type.as_mut()).and_then(|t| t.shape.as_mut()) {
            shape.dim.insert(0, Dimension { dim_value: None, dim_param: Some("batch".into()) });
        }
        self.graph.input.push(v);
        self
    }

    /// An initializer (a constant input); its name is the tensor's.
    pub fn initializer(mut self, t: TensorProto) -> Self {
        self.graph.initializer.push(t);
        self
    }

    /// A node; an empty input name is an omitted optional input.
    pub fn node(mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> Self {
        let index = self.graph.node.len();
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("{op}_{index}"),
            op_type: op.to_string(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }

    /// A graph output (type and shape left undeclared).
    pub fn output(mut self, name: &str) -> Self {
        self.graph.output.push(ValueInfoProto { name: name.to_string(), ..Default::default() });
        self
    }

    /// Names the last node added.
    pub fn named(mut self, name: &str) -> Self {
        if let Some(n) = self.graph.node.last_mut() {
            n.name = name.to_string();
        }
        self
    }

    pub fn build(self) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: self.opset }],
            producer_name: "gauntlet".into(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}
