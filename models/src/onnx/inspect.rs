//! What `gauntlet inspect` tells about an ONNX file, including what the executor cannot run.

use std::fmt::Write as _;
use std::path::Path;

use candle_core::Device;

use super::graph::ValueInfo;
use super::ops::{self, Grad};
use super::proto::ModelProto;
use super::OnnxModel;
use crate::{Classifier, LoadOptions, ModelError, Result};

/// A readable summary of an ONNX model; never fails on unsupported operators (it lists them).
pub fn inspect(path: &Path, opts: &LoadOptions) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io { path: path.into(), message: e.to_string() })?;
    let model = ModelProto::decode_bytes(&bytes).map_err(|e| ModelError::Onnx {
        path: path.into(),
        message: format!("not a valid ONNX model (protobuf decoding failed: {e})"),
    })?;
    let Some(g) = &model.graph else {
        return Err(ModelError::Onnx { path: path.into(), message: "the model holds no graph".into() });
    };
    let mut out = String::new();
    let _ = writeln!(out, "model      {}", path.display());
    let producer = format!("{} {}", model.producer_name, model.producer_version);
    let _ = writeln!(out, "producer   {}", producer.trim());
    let opsets: Vec<String> = model
        .opset_import
        .iter()
        .map(|o| {
            format!(
                "{}{}",
                if o.domain.is_empty() { "ai.onnx ".to_string() } else { format!("{} ", o.domain) },
                o.version
            )
        })
        .collect();
    let _ = writeln!(out, "IR version {}; opset {}", model.ir_version, opsets.join(", "));
    let initializers: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let params: i64 = g.initializer.iter().map(|t| t.dims.iter().product::<i64>()).sum();
    let show = |v: &super::proto::ValueInfoProto| {
        let info = ValueInfo::from_proto_pub(v);
        format!("  {} {} {}", info.name, info.elem_type, info.shape_text())
    };
    let _ = writeln!(out, "inputs");
    for v in g.input.iter().filter(|v| !initializers.contains(v.name.as_str())) {
        let _ = writeln!(out, "{}", show(v));
    }
    let _ = writeln!(out, "outputs");
    for v in &g.output {
        let _ = writeln!(out, "{}", show(v));
    }
    let _ = writeln!(out, "parameters {params} in {} initializers", g.initializer.len());
    let _ = writeln!(out, "nodes      {}", g.node.len());
    let mut hist: Vec<(String, usize)> = Vec::new();
    for n in &g.node {
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}:{}", n.domain, n.op_type)
        };
        match hist.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += 1,
            None => hist.push((key, 1)),
        }
    }
    hist.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let _ = writeln!(out, "operators");
    for (op, count) in &hist {
        let status = match ops::lookup(op) {
            None => "UNSUPPORTED",
            Some(d) if d.grad == Grad::Masked => "no useful gradient",
            Some(_) => "",
        };
        let _ = writeln!(out, "{}", format!("  {count:>5}  {op}  {status}").trim_end());
    }
    let unsupported: Vec<String> = g
        .node
        .iter()
        .filter(|n| !(n.domain.is_empty() || n.domain == "ai.onnx") || ops::lookup(&n.op_type).is_none())
        .map(|n| format!("{} (node `{}`)", n.op_type, n.name))
        .collect();
    if !unsupported.is_empty() {
        let _ = writeln!(out, "unsupported {}", unsupported.join(", "));
        let _ = writeln!(out, "gradient   unknown: the model cannot run until these operators are supported");
        return Ok(out);
    }
    match OnnxModel::load(path, &Device::Cpu, opts) {
        Ok(m) => {
            let (input, output) = m.io();
            let [c, h, w] = m.input_shape();
            let _ =
                writeln!(out, "image input `{input}` ({c}, {h}, {w}); logits `{output}`; {} classes", m.num_classes());
            for note in m.notes() {
                let _ = writeln!(out, "note       {note}");
            }
            let _ = writeln!(out, "executor   {}", Classifier::executor(&m));
            match m.gradient_issue() {
                None => {
                    let _ =
                        writeln!(out, "gradient   available: every operator from input to logits is differentiable");
                }
                Some(issue) => {
                    let _ = writeln!(
                        out,
                        "gradient   MASKED: {issue}; gradient attacks are refused, gradient-free attacks (square) still run"
                    );
                }
            }
            let _ = writeln!(out, "cuda       {}", cuda_summary(m.graph()));
            let _ = match m.bound_net() {
                Ok(_) => writeln!(out, "certify    ibp, crown (--certify)"),
                Err(e) => writeln!(out, "certify    not available: {e}"),
            };
        }
        Err(e) => {
            let _ = writeln!(out, "load       FAILED: {e}");
        }
    }
    Ok(out)
}

/// Every operator the executor runs, one per line, with its gradient status and what it does
/// on a CUDA device.
pub fn operator_list() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<22} {:<12} gradient", "operator", "cuda");
    for d in ops::REGISTRY {
        let g = match d.grad {
            Grad::Yes => "differentiable",
            Grad::NotNeeded => "no gradient needed (shapes, indices, masks)",
            Grad::Masked => "no useful gradient (gradient attacks refused)",
        };
        let _ = writeln!(out, "{:<22} {:<12} {g}", d.name, cuda_label(d.cuda));
    }
    let _ = writeln!(
        out,
        "\ncuda: device = candle's CUDA kernels only; parameters = reads a few values (a shape, axes, a scalar) to the host \
         per call; host = the values pass through the host (for some input types)"
    );
    out
}

fn cuda_label(c: ops::Cuda) -> &'static str {
    match c {
        ops::Cuda::Device => "device",
        ops::Cuda::Parameters => "parameters",
        ops::Cuda::Host => "host",
    }
}

/// What the graph's per-call operators do on a CUDA device, in one line.
pub fn cuda_summary(graph: &super::Graph) -> String {
    let reads = graph.host_reads();
    if reads.is_empty() {
        return "every operator on the device, no host reads".into();
    }
    let list: Vec<String> = reads.iter().map(|(op, c, n)| format!("{op} ×{n} ({})", cuda_label(*c))).collect();
    format!("host reads per call: {}", list.join(", "))
}
