//! Runs the ONNX backend node tests (e.g. Debian's `libonnx-testdata`:
//! `/usr/share/libonnx-testdata/data/node`) through Gauntlet's ONNX executor.
//!
//! ```text
//! cargo run --release --example onnx_conformance -- /usr/share/libonnx-testdata/data/node [--filter conv] [--verbose]
//! ```
//!
//! Every test whose operators, attributes and data types the executor claims is run and its
//! outputs compared with the expected ones (|got − want| ≤ atol + rtol·|want|, rtol 1e-3,
//! atol 1e-5; NaN matches NaN; shapes must match exactly). A test the executor rejects as
//! unsupported at load or run time counts as unsupported, with the reason under `--verbose`.
//! The last line is `conformance: P passed, F failed, U unsupported`; the exit code is 1 when
//! any test failed.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gauntlet_models::onnx::{tensor, Graph};
use gauntlet_models::ModelError;

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

enum Verdict {
    Pass,
    Fail(String),
    Unsupported(String),
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix(prefix)?.strip_suffix(".pb")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

fn classify(e: ModelError) -> Verdict {
    match e {
        ModelError::UnsupportedOps { list, .. } => Verdict::Unsupported(format!("operators: {list}")),
        e @ ModelError::NodeUnsupported { .. } => Verdict::Unsupported(e.to_string()),
        e => Verdict::Fail(e.to_string()),
    }
}

fn values(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()
}

fn compare(name: &str, got: &Tensor, want: &Tensor) -> Option<String> {
    if got.dims() != want.dims() {
        return Some(format!("output `{name}`: shape {:?}, expected {:?}", got.dims(), want.dims()));
    }
    let want_int = !want.dtype().is_float();
    if want_int && got.dtype().is_float() {
        return Some(format!("output `{name}`: type {:?}, expected {:?}", got.dtype(), want.dtype()));
    }
    let (g, w) = match (values(got), values(want)) {
        (Ok(g), Ok(w)) => (g, w),
        (Err(e), _) | (_, Err(e)) => return Some(format!("output `{name}`: {e}")),
    };
    let mut worst: Option<(usize, f64, f64)> = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= ATOL + RTOL * b.abs();
        if !ok && worst.is_none_or(|(_, x, y)| (a - b).abs() > (x - y).abs()) {
            worst = Some((i, a, b));
        }
    }
    worst.map(|(i, a, b)| format!("output `{name}`: value {i} is {a}, expected {b}"))
}

fn run_test(dir: &Path, device: &Device) -> Verdict {
    let graph = match Graph::load(&dir.join("model.onnx"), device) {
        Ok(g) => g,
        Err(e) => return classify(e),
    };
    for v in graph.inputs.iter().chain(&graph.outputs) {
        if tensor::dtype_of(v.elem_code).is_none() {
            return Verdict::Unsupported(format!("`{}` has type {}", v.name, v.elem_type));
        }
    }
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    sets.sort();
    if sets.is_empty() {
        return Verdict::Fail("no test_data_set_* folder".into());
    }
    for set in sets {
        let mut feeds = Vec::new();
        for (i, file) in numbered(&set, "input_").into_iter().enumerate() {
            let Some(info) = graph.inputs.get(i) else {
                return Verdict::Fail(format!("{}: more inputs than the graph declares", set.display()));
            };
            match tensor::read_pb(&file, device) {
                Ok(t) => feeds.push((info.name.as_str(), t)),
                Err(tensor::DecodeError::Unsupported(m)) => return Verdict::Unsupported(format!("input: {m}")),
                Err(e) => return Verdict::Fail(e.to_string()),
            }
        }
        let expected = numbered(&set, "output_");
        let names: Vec<&str> = graph.outputs.iter().take(expected.len()).map(|o| o.name.as_str()).collect();
        let got = match graph.run(&feeds, &names) {
            Ok(g) => g,
            Err(e) => return classify(e),
        };
        for ((file, name), got) in expected.iter().zip(&names).zip(&got) {
            let want = match tensor::read_pb(file, device) {
                Ok(t) => t,
                Err(tensor::DecodeError::Unsupported(m)) => return Verdict::Unsupported(format!("output: {m}")),
                Err(e) => return Verdict::Fail(e.to_string()),
            };
            if let Some(why) = compare(name, got, &want) {
                return Verdict::Fail(why);
            }
        }
    }
    Verdict::Pass
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut root = None;
    let mut filter = None;
    let mut verbose = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--filter" => filter = args.next(),
            "--verbose" | "-v" => verbose = true,
            _ => root = Some(PathBuf::from(a)),
        }
    }
    let Some(root) = root else {
        eprintln!("usage: onnx_conformance DIR [--filter TEXT] [--verbose]   (DIR holds one folder per test)");
        std::process::exit(2);
    };
    let mut tests: Vec<PathBuf> = match std::fs::read_dir(&root) {
        Ok(rd) => rd.flatten().map(|e| e.path()).filter(|p| p.join("model.onnx").is_file()).collect(),
        Err(e) => {
            eprintln!("error: {}: {e}", root.display());
            std::process::exit(2);
        }
    };
    tests.sort();
    if let Some(f) = &filter {
        tests.retain(|t| t.file_name().is_some_and(|n| n.to_string_lossy().contains(f.as_str())));
    }
    if tests.is_empty() {
        eprintln!("error: {}: no test folders with a model.onnx", root.display());
        std::process::exit(2);
    }
    let device = Device::Cpu;
    let (mut pass, mut fail, mut unsupported) = (0, 0, 0);
    for t in &tests {
        let name = t.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match run_test(t, &device) {
            Verdict::Pass => {
                pass += 1;
                if verbose {
                    println!("PASS {name}");
                }
            }
            Verdict::Fail(why) => {
                fail += 1;
                println!("FAIL {name}: {why}");
            }
            Verdict::Unsupported(why) => {
                unsupported += 1;
                if verbose {
                    println!("UNSUPPORTED {name}: {why}");
                }
            }
        }
    }
    println!("conformance: {pass} passed, {fail} failed, {unsupported} unsupported");
    if fail > 0 {
        std::process::exit(1);
    }
}
