//! The ONNX model: parse (pure Rust, `prost`), prepare once, run many times — through the compiled
//! plan of [`crate::engine`] where it covers the graph, otherwise node by node on candle ops with
//! the input gradient from candle's autograd. See docs/ONNX.md.

pub mod builder;
pub mod graph;
mod inspect;
pub(crate) mod lower;
pub mod node;
pub mod ops;
pub mod proto;
pub mod tensor;

pub use graph::{Dim, Graph, ValueInfo};
pub use inspect::{inspect, operator_list};

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::engine::Engine;
use crate::{autograd_loss_and_grad, Classifier, Goal, LoadOptions, Loss, LossGrad, ModelError, Result};

/// The files a model reads: the .onnx file and the external data files its initializers name.
pub fn files(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io { path: path.into(), message: e.to_string() })?;
    let model = proto::ModelProto::decode_bytes(&bytes)
        .map_err(|e| err(path, format!("not a valid ONNX model (protobuf decoding failed: {e})")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut files = vec![path.to_path_buf()];
    for t in model.graph.iter().flat_map(|g| &g.initializer) {
        for e in t.external_data.iter().filter(|e| e.key == "location") {
            let f = base.join(&e.value);
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    Ok(files)
}

/// An ONNX classifier: the graph plus the choice of input and logits.
pub struct OnnxModel {
    graph: Graph,
    input: String,
    output: String,
    /// The model's own input without the batch axis (as the graph takes it).
    input_shape: [usize; 3],
    /// The graph takes (N, C·H·W) rather than (N, C, H, W).
    flat_input: bool,
    classes: usize,
    dtype: DType,
    /// Run one sample at a time: the graph bakes its exported batch size into its shapes.
    per_sample: bool,
    notes: Vec<String>,
    blockers: Vec<(String, String)>,
    /// The compiled plan, or why the graph runs node by node.
    engine: std::result::Result<Engine, String>,
}

fn err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Onnx { path: path.into(), message: message.into() }
}

impl OnnxModel {
    /// Loads and prepares `path` for `device`.
    pub fn load(path: &Path, device: &Device, opts: &LoadOptions) -> Result<OnnxModel> {
        let graph = Graph::load(path, device)?;
        let names = |v: &[ValueInfo]| {
            v.iter().map(|i| format!("`{}` {}", i.name, i.shape_text())).collect::<Vec<_>>().join(", ")
        };
        let input = match &opts.input_name {
            Some(n) => graph.inputs.iter().find(|i| &i.name == n).ok_or_else(|| {
                err(path, format!("no graph input named `{n}`; the inputs are {}", names(&graph.inputs)))
            })?,
            None => match graph.inputs.as_slice() {
                [one] => one,
                [] => return Err(err(path, "the graph has no input")),
                many => {
                    return Err(err(
                        path,
                        format!(
                            "the graph has {} inputs ({}); choose the image input with --input-name",
                            many.len(),
                            names(many)
                        ),
                    ))
                }
            },
        }
        .clone();
        let declared_output = match &opts.output_name {
            Some(n) => n.clone(),
            None => match graph.outputs.as_slice() {
                [one] => one.name.clone(),
                [] => return Err(err(path, "the graph has no output")),
                many => {
                    return Err(err(
                        path,
                        format!(
                            "the graph has {} outputs ({}); choose the class scores with --output-name",
                            many.len(),
                            names(many)
                        ),
                    ))
                }
            },
        };
        let dtype = match input.elem_type.as_str() {
            "float" => DType::F32,
            "double" => DType::F64,
            other => {
                return Err(err(
                    path,
                    format!(
                        "input `{}` has type {other}; only float and double image inputs are supported",
                        input.name
                    ),
                ))
            }
        };
        let (input_shape, flat_input) = Self::input_shape(path, &input, opts.input_shape)?;

        let mut notes = Vec::new();
        let mut output = declared_output.clone();
        if let Some(node) = graph.producer(&declared_output).filter(|n| n.op == "Softmax") {
            if opts.keep_softmax {
                notes.push(format!(
                    "the graph ends in Softmax (node `{}`): attacks see probabilities, whose cross-entropy gradient vanishes on confident samples and overstates robustness; drop --keep-softmax to attack the logits",
                    node.name
                ));
            } else {
                notes.push(format!(
                    "the graph ends in Softmax (node `{}`): its input `{}` is used as the logits (cross-entropy on probabilities masks gradients); pass --keep-softmax to keep it",
                    node.name, node.inputs[0]
                ));
                output = node.inputs[0].clone();
            }
        }
        let blockers = graph.gradient_blockers(&input.name, &output);
        let mut model = OnnxModel {
            graph,
            input: input.name.clone(),
            output,
            input_shape,
            flat_input,
            classes: 0,
            dtype,
            per_sample: false,
            notes,
            blockers,
            engine: Err(String::new()),
        };
        model.probe(path)?;
        model.engine = if opts.node_by_node { Err("node by node, as asked".into()) } else { model.compile() };
        if !device.is_cpu() && !model.graph.host_reads().is_empty() {
            model.notes.push(format!("on the GPU, {}", inspect::cuda_summary(&model.graph)));
        }
        Ok(model)
    }

    fn input_shape(path: &Path, input: &ValueInfo, given: Option<[usize; 3]>) -> Result<([usize; 3], bool)> {
        let dims = input.shape.clone().unwrap_or_default();
        match dims.len() {
            4 => {
                let mut shape = [0usize; 3];
                for (a, d) in dims[1..].iter().enumerate() {
                    shape[a] = match (d, given) {
                        (Dim::Fixed(v), Some(g)) if g[a] != *v => {
                            return Err(err(
                                path,
                                format!(
                                    "--input-shape {g:?} contradicts input `{}` {}",
                                    input.name,
                                    input.shape_text()
                                ),
                            ))
                        }
                        (Dim::Fixed(v), _) => *v,
                        (Dim::Free(_), Some(g)) => g[a],
                        (Dim::Free(_), None) => {
                            return Err(err(
                                path,
                                format!(
                                "input `{}` {} leaves its size open; give it with --input-shape C,H,W (e.g. 3,224,224)",
                                input.name,
                                input.shape_text()
                            ),
                            ))
                        }
                    };
                }
                Ok((shape, false))
            }
            2 => {
                let Some(g) = given else {
                    return Err(err(
                        path,
                        format!(
                            "input `{}` {} takes flattened images; give the image shape with --input-shape C,H,W (e.g. 1,28,28)",
                            input.name,
                            input.shape_text()
                        ),
                    ));
                };
                if let Dim::Fixed(d) = dims[1] {
                    if d != g.iter().product::<usize>() {
                        return Err(err(
                            path,
                            format!(
                                "--input-shape {g:?} has {} values, input `{}` takes {d}",
                                g.iter().product::<usize>(),
                                input.name
                            ),
                        ));
                    }
                }
                Ok((g, true))
            }
            0 => match given {
                Some(g) => Ok((g, false)),
                None => Err(err(
                    path,
                    format!("input `{}` declares no shape; give it with --input-shape C,H,W", input.name),
                )),
            },
            n => Err(err(
                path,
                format!(
                    "input `{}` {} has rank {n}; image classifiers take (N, C, H, W), (N, H, W, C) or (N, C·H·W)",
                    input.name,
                    input.shape_text()
                ),
            )),
        }
    }

    /// Runs two samples batched and one at a time: finds the number of classes and whether the
    /// graph handles any batch size.
    fn probe(&mut self, path: &Path) -> Result<()> {
        let [c, h, w] = self.input_shape;
        let n = c * h * w;
        let values: Vec<f32> = (0..2 * n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let x = Tensor::from_vec(values, (2, c, h, w), self.graph.device())?;
        let single = |m: &OnnxModel| -> Result<Tensor> {
            let a = m.run_batch(&x.narrow(0, 0, 1)?)?;
            let b = m.run_batch(&x.narrow(0, 1, 1)?)?;
            Ok(Tensor::cat(&[a, b], 0)?)
        };
        let one_by_one = single(self).map_err(|e| match e {
            e @ (ModelError::Node { .. } | ModelError::NodeUnsupported { .. }) => e,
            e => err(path, e.to_string()),
        })?;
        let (_, k) = one_by_one.dims2()?;
        self.classes = k;
        match self.run_batch(&x) {
            Ok(batched) if batched.dims() == one_by_one.dims() => {
                let diff =
                    (batched - &one_by_one)?.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                let scale = one_by_one.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if diff > 1e-4 * scale.max(1.0) {
                    self.per_sample = true;
                }
            }
            _ => self.per_sample = true,
        }
        if self.per_sample {
            self.notes.push(
                "the graph's shapes fix the exported batch size: samples are run one at a time (re-export with a dynamic batch axis for speed)".into(),
            );
        }
        Ok(())
    }

    /// Compiles the graph and checks the plan against the node-by-node executor on the probe's
    /// inputs; any refusal or disagreement leaves the model running node by node.
    fn compile(&self) -> std::result::Result<Engine, String> {
        if self.per_sample {
            return Err("the graph fixes its batch size".into());
        }
        if self.dtype != DType::F32 {
            return Err("the graph computes in float64".into());
        }
        if !self.graph.device().is_cpu() {
            return Err("compiled kernels run on the CPU".into());
        }
        let [c, h, w] = self.input_shape;
        let sample = if self.flat_input { vec![c * h * w] } else { vec![c, h, w] };
        let engine = lower::compile(&self.graph, &self.input, &self.output, &sample)?;
        if engine.output_len() != self.classes {
            return Err(format!(
                "the plan gives {} logits per sample, the graph {}",
                engine.output_len(),
                self.classes
            ));
        }
        let n = c * h * w;
        let values: Vec<f32> = (0..3 * n).map(|i| ((i * 104729 + 7) % 997) as f32 / 997.0).collect();
        let x = Tensor::from_vec(values.clone(), (3, c, h, w), self.graph.device()).map_err(|e| e.to_string())?;
        let reference =
            self.run_batch(&x).and_then(|y| Ok(y.flatten_all()?.to_vec1::<f32>()?)).map_err(|e| e.to_string())?;
        let compiled = engine.forward(3, &values);
        let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = reference.iter().zip(&compiled).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // NaN anywhere counts as a disagreement.
        if worst.is_nan() || compiled.iter().any(|v| v.is_nan()) || worst > 1e-4 * scale {
            return Err(format!("the plan's logits differ from the graph's by {worst:e}"));
        }
        Ok(engine)
    }

    /// The compiled plan, when it can take `x`.
    fn plan(&self, x: &Tensor) -> Option<&Engine> {
        self.engine.as_ref().ok().filter(|e| e.takes(x))
    }

    /// Which executor runs the model: the compiled plan with its kernels, or node by node and why.
    pub fn executor(&self) -> std::result::Result<&Engine, &str> {
        self.engine.as_ref().map_err(|s| s.as_str())
    }

    fn run_batch(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dims()[0];
        let x = x.to_dtype(self.dtype)?;
        let x = if self.flat_input { x.reshape((n, ()))? } else { x };
        let out = self.graph.run(&[(self.input.as_str(), x)], &[self.output.as_str()])?;
        let y = out.into_iter().next().expect("one output");
        if y.dims().first() != Some(&n) {
            return Err(err(
                &self.graph.path,
                format!("output `{}` has shape {:?} for a batch of {n}", self.output, y.dims()),
            ));
        }
        let y = y.reshape((n, ()))?;
        Ok(y.to_dtype(DType::F32)?)
    }

    /// Nodes between input and logits whose gradient is masked, as (node, op).
    pub fn gradient_blockers(&self) -> &[(String, String)] {
        &self.blockers
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The graph input and the value read as logits.
    pub fn io(&self) -> (&str, &str) {
        (&self.input, &self.output)
    }
}

impl Classifier for OnnxModel {
    fn loss_and_grad(&self, x: &Tensor, goal: &Goal, loss: Loss) -> Result<LossGrad> {
        match self.plan(x) {
            Some(engine) => engine.loss_and_grad(x, goal, loss),
            None => autograd_loss_and_grad(self, x, goal, loss),
        }
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(engine) = self.plan(x) {
            return engine.logits(x);
        }
        let y = if self.per_sample {
            let parts = (0..x.dims()[0]).map(|i| self.run_batch(&x.narrow(0, i, 1)?)).collect::<Result<Vec<_>>>()?;
            Tensor::cat(&parts, 0)?
        } else {
            self.run_batch(x)?
        };
        Ok(y.to_dtype(x.dtype())?)
    }

    fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }

    fn num_classes(&self) -> usize {
        self.classes
    }

    fn device(&self) -> &Device {
        self.graph.device()
    }

    fn parameter_count(&self) -> usize {
        self.graph.parameter_count
    }

    fn executor(&self) -> String {
        match &self.engine {
            Ok(e) => e.summary(),
            Err(why) => format!("node by node: {why}"),
        }
    }

    fn bound_net(&self) -> Result<crate::bounds::BoundNet> {
        let fail = ModelError::Bounds;
        let [c, h, w] = self.input_shape;
        let sample = if self.flat_input { vec![c * h * w] } else { vec![c, h, w] };
        let engine = lower::compile_unfused(&self.graph, &self.input, &self.output, &sample).map_err(fail)?;
        crate::bounds::BoundNet::new(engine, self.classes).map_err(fail)
    }

    /// Load-time findings worth telling the user (softmax head, batch size, …).
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn gradient_issue(&self) -> Option<String> {
        if self.blockers.is_empty() {
            return None;
        }
        let list: Vec<String> = self.blockers.iter().map(|(n, op)| format!("{op} (node `{n}`)")).collect();
        Some(format!("the input gradient passes through {}, whose gradient is zero or undefined", list.join(", ")))
    }
}
