//! An ONNX graph prepared once and run many times: nodes in topological order, initializers and
//! constant sub-graphs decoded and folded onto the target device at load time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::node::{Ctx, Node};
use super::ops::{self, Grad, OpDef};
use super::proto::{data_type, ModelProto, ValueInfoProto};
use super::tensor::{self, DecodeError};
use crate::{ModelError, Result};

/// One dimension of a graph input or output as declared in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// A named or unnamed free dimension.
    Free(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Free(s) if s.is_empty() => f.write_str("?"),
            Dim::Free(s) => f.write_str(s),
        }
    }
}

/// A graph input or output.
#[derive(Debug, Clone)]
pub struct ValueInfo {
    pub name: String,
    /// ONNX element type name (`float`, `int64`, …).
    pub elem_type: String,
    /// ONNX element type code; 0 for a value that is not a tensor (sequence, map, optional).
    pub elem_code: i32,
    /// `None` when the file declares no shape.
    pub shape: Option<Vec<Dim>>,
}

impl ValueInfo {
    /// The declared name, type and shape of a graph input or output.
    pub fn from_proto_pub(v: &ValueInfoProto) -> ValueInfo {
        Self::from_proto(v)
    }

    fn from_proto(v: &ValueInfoProto) -> ValueInfo {
        let tt = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        let elem_type = tt.map_or("not a tensor", |t| data_type::name(t.elem_type)).to_string();
        let elem_code = tt.map_or(0, |t| t.elem_type);
        let shape = tt.and_then(|t| t.shape.as_ref()).map(|s| {
            s.dim
                .iter()
                .map(|d| match (d.dim_value, &d.dim_param) {
                    (Some(v), _) if v > 0 => Dim::Fixed(v as usize),
                    (_, Some(p)) => Dim::Free(p.clone()),
                    _ => Dim::Free(String::new()),
                })
                .collect()
        });
        ValueInfo { name: v.name.clone(), elem_type, elem_code, shape }
    }

    /// The declared shape as text, e.g. `[batch, 3, 224, 224]`.
    pub fn shape_text(&self) -> String {
        match &self.shape {
            None => "unknown shape".into(),
            Some(dims) => format!("[{}]", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        }
    }
}

struct Step {
    node: usize,
    def: &'static OpDef,
}

/// A loaded, prepared ONNX graph.
pub struct Graph {
    pub path: PathBuf,
    pub ir_version: i64,
    pub opset: i64,
    pub producer: String,
    /// Every node, in topological order.
    pub nodes: Vec<Node>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Number of values in the initializers (the parameters).
    pub parameter_count: usize,
    /// Initializers, Constant outputs and folded constant sub-graphs.
    consts: HashMap<String, Tensor>,
    steps: Vec<Step>,
    device: Device,
}

fn onnx_err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Onnx { path: path.to_path_buf(), message: message.into() }
}

impl Graph {
    /// Reads and prepares the model at `path` for `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Graph> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io { path: path.into(), message: e.to_string() })?;
        let model = ModelProto::decode_bytes(&bytes).map_err(|e| {
            onnx_err(path, format!("not a valid ONNX model (protobuf decoding failed: {e}); re-export the model or check that the file is complete"))
        })?;
        Graph::from_proto(model, path, device)
    }

    /// Prepares a decoded model; `path` names it in messages and locates external data.
    pub fn from_proto(model: ModelProto, path: &Path, device: &Device) -> Result<Graph> {
        let Some(g) = model.graph else {
            return Err(onnx_err(path, "the model holds no graph; is this an ONNX model file?"));
        };
        let opset =
            model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(1, |o| o.version);
        let nodes: Vec<Node> = g.node.iter().enumerate().map(|(i, n)| Node::from_proto(n, i)).collect();

        // Every operator we cannot run, named with its nodes, at once.
        let mut missing: Vec<(String, Vec<String>)> = Vec::new();
        for n in &nodes {
            let known = (n.domain.is_empty() || n.domain == "ai.onnx") && ops::lookup(&n.op).is_some();
            if !known {
                let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
                    n.op.clone()
                } else {
                    format!("{}:{}", n.domain, n.op)
                };
                match missing.iter_mut().find(|(o, _)| *o == op) {
                    Some((_, names)) => names.push(n.name.clone()),
                    None => missing.push((op, vec![n.name.clone()])),
                }
            }
        }
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|(op, names)| {
                    let shown: Vec<String> = names.iter().take(5).map(|n| format!("`{n}`")).collect();
                    let more = if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() };
                    format!("{op} (node {}{more})", shown.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ModelError::UnsupportedOps { path: path.into(), count: missing.len(), list });
        }

        let base = path.parent().map(Path::to_path_buf);
        let mut consts = HashMap::new();
        let mut parameter_count = 0;
        for t in &g.initializer {
            let value = tensor::decode(t, base.as_deref(), device).map_err(|e| match e {
                DecodeError::Unsupported(m) => {
                    ModelError::NodeUnsupported { node: t.name.clone(), op: "initializer".into(), message: m }
                }
                DecodeError::Invalid(m) => onnx_err(path, format!("initializer `{}`: {m}", t.name)),
            })?;
            parameter_count += value.elem_count();
            consts.insert(t.name.clone(), value);
        }
        if !g.sparse_initializer.is_empty() {
            return Err(ModelError::NodeUnsupported {
                node: "graph".into(),
                op: "sparse_initializer".into(),
                message: "sparse initializers are not supported".into(),
            });
        }
        let inputs: Vec<ValueInfo> =
            g.input.iter().filter(|v| !consts.contains_key(&v.name)).map(ValueInfo::from_proto).collect();
        let outputs: Vec<ValueInfo> = g.output.iter().map(ValueInfo::from_proto).collect();

        let nodes = topological_order(nodes, &inputs, &consts, path)?;
        let mut graph = Graph {
            path: path.into(),
            ir_version: model.ir_version,
            opset,
            producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
            nodes,
            inputs,
            outputs,
            parameter_count,
            consts,
            steps: Vec::new(),
            device: device.clone(),
        };
        graph.fold_constants()?;
        Ok(graph)
    }

    /// Runs every node whose inputs are all constant once, now; the rest become the steps.
    fn fold_constants(&mut self) -> Result<()> {
        let mut steps = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let def = ops::lookup(&node.op).expect("checked at load");
            let constant = node.inputs.iter().all(|n| n.is_empty() || self.consts.contains_key(n));
            if constant {
                let inputs: Vec<Option<Tensor>> =
                    node.inputs.iter().map(|n| if n.is_empty() { None } else { self.consts.get(n).cloned() }).collect();
                let ctx = Ctx { node, opset: self.opset, device: &self.device };
                let outs = (def.run)(&ctx, &inputs).map_err(|e| wrap(node, e))?;
                for (name, t) in node.outputs.iter().zip(outs) {
                    if !name.is_empty() {
                        self.consts.insert(name.clone(), t);
                    }
                }
            } else {
                steps.push(Step { node: i, def });
            }
        }
        self.steps = steps;
        Ok(())
    }

    /// Evaluates the graph on `feeds` and returns the values named in `wanted`.
    pub fn run(&self, feeds: &[(&str, Tensor)], wanted: &[&str]) -> Result<Vec<Tensor>> {
        let env = self.evaluate(feeds)?;
        wanted
            .iter()
            .map(|w| {
                env.get(w)
                    .or_else(|| self.consts.get(*w))
                    .cloned()
                    .ok_or_else(|| onnx_err(&self.path, format!("the graph computes no value named `{w}`")))
            })
            .collect()
    }

    /// The nodes that run on every call (those not folded into constants), in order.
    pub fn step_nodes(&self) -> impl Iterator<Item = &Node> {
        self.steps.iter().map(|s| &self.nodes[s.node])
    }

    /// The operators among the steps that read values back to the host on a CUDA device, with
    /// their declaration and how many nodes use them (constant sub-graphs are folded at load and
    /// do not count).
    pub fn host_reads(&self) -> Vec<(&'static str, ops::Cuda, usize)> {
        let mut out: Vec<(&'static str, ops::Cuda, usize)> = Vec::new();
        for node in self.step_nodes() {
            let Some(def) = ops::lookup(&node.op).filter(|d| d.cuda != ops::Cuda::Device) else { continue };
            match out.iter_mut().find(|(n, ..)| *n == def.name) {
                Some((.., count)) => *count += 1,
                None => out.push((def.name, def.cuda, 1)),
            }
        }
        out
    }

    /// Every value the steps compute from `feeds`, by name (the feeds included).
    pub fn evaluate<'a>(&'a self, feeds: &[(&'a str, Tensor)]) -> Result<HashMap<&'a str, Tensor>> {
        let mut env: HashMap<&str, Tensor> = feeds.iter().map(|(n, t)| (*n, t.clone())).collect();
        for step in &self.steps {
            let node = &self.nodes[step.node];
            let mut inputs = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    inputs.push(None);
                    continue;
                }
                let v = env.get(name.as_str()).or_else(|| self.consts.get(name)).cloned().ok_or_else(|| {
                    ModelError::Node {
                        node: node.name.clone(),
                        op: node.op.clone(),
                        message: format!("input `{name}` has no value (a graph input not fed?)"),
                    }
                })?;
                inputs.push(Some(v));
            }
            let ctx = Ctx { node, opset: self.opset, device: &self.device };
            let outs = (step.def.run)(&ctx, &inputs).map_err(|e| wrap(node, e))?;
            for (name, t) in node.outputs.iter().zip(outs) {
                if !name.is_empty() {
                    env.insert(name.as_str(), t);
                }
            }
        }
        Ok(env)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The node that produces `value`, if any.
    pub fn producer(&self, value: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.outputs.iter().any(|o| o == value))
    }

    /// The constant (initializer or folded) named `name`.
    pub fn constant(&self, name: &str) -> Option<&Tensor> {
        self.consts.get(name)
    }

    /// Operator histogram: (op, count), most frequent first.
    pub fn op_histogram(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for n in &self.nodes {
            match counts.iter_mut().find(|(o, _)| *o == n.op) {
                Some((_, c)) => *c += 1,
                None => counts.push((n.op.clone(), 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts
    }

    /// Nodes on a path from `input` to `output` whose gradient is masked (zero or undefined),
    /// as (node name, op). A float→integer Cast counts too.
    pub fn gradient_blockers(&self, input: &str, output: &str) -> Vec<(String, String)> {
        // Forward: values whose numbers depend on the input's values (a Shape or a comparison
        // depends on it, but carries no gradient and needs none).
        let mut depends: HashSet<&str> = HashSet::from([input]);
        for n in &self.nodes {
            let carries = ops::lookup(&n.op).is_none_or(|d| d.grad == Grad::Yes);
            if carries && n.inputs.iter().any(|i| depends.contains(i.as_str())) {
                for o in &n.outputs {
                    depends.insert(o);
                }
            }
        }
        // Backward: values the output depends on.
        let mut needed: HashSet<&str> = HashSet::from([output]);
        for n in self.nodes.iter().rev() {
            if n.outputs.iter().any(|o| needed.contains(o.as_str())) {
                for i in &n.inputs {
                    needed.insert(i);
                }
            }
        }
        self.nodes
            .iter()
            .filter(|n| {
                n.inputs.iter().any(|i| depends.contains(i.as_str()))
                    && n.outputs.iter().any(|o| needed.contains(o.as_str()))
            })
            .filter(|n| {
                let def = ops::lookup(&n.op);
                let cast_to_int = n.op == "Cast"
                    && n.attrs.get("to").is_some_and(|a| {
                        !matches!(
                            a.i as i32,
                            data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 | data_type::BFLOAT16
                        )
                    });
                def.is_some_and(|d| d.grad == Grad::Masked) || cast_to_int
            })
            .map(|n| (n.name.clone(), n.op.clone()))
            .collect()
    }
}

fn wrap(node: &Node, e: ModelError) -> ModelError {
    match e {
        e @ (ModelError::Node { .. } | ModelError::NodeUnsupported { .. }) => e,
        other => ModelError::Node { node: node.name.clone(), op: node.op.clone(), message: other.to_string() },
    }
}

fn topological_order(
    nodes: Vec<Node>,
    inputs: &[ValueInfo],
    consts: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<Vec<Node>> {
    let mut available: HashSet<String> = inputs.iter().map(|v| v.name.clone()).collect();
    available.extend(consts.keys().cloned());
    let mut pending: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let mut order = Vec::with_capacity(pending.len());
    loop {
        let mut progressed = false;
        for slot in pending.iter_mut() {
            let ready = slot.as_ref().is_some_and(|n| n.inputs.iter().all(|i| i.is_empty() || available.contains(i)));
            if ready {
                let n = slot.take().expect("ready");
                available.extend(n.outputs.iter().cloned());
                order.push(n);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    if let Some(stuck) = pending.iter().flatten().next() {
        let missing: Vec<&String> = stuck.inputs.iter().filter(|i| !i.is_empty() && !available.contains(*i)).collect();
        return Err(onnx_err(
            path,
            format!(
                "node `{}` ({}) reads {missing:?}, which no graph input, initializer or node provides (or the graph has a cycle)",
                stuck.name, stuck.op
            ),
        ));
    }
    Ok(order)
}
