//! Helpers shared by the integration tests: the `gauntlet` binary, scratch folders, the shipped
//! MNIST samples, evaluation configurations and reports built from an evaluation.
//!
//! Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gauntlet::attacks::{Norm, Registry};
use gauntlet::datasets::{samples, ImageSet};
use gauntlet::eval::{EvalConfig, Evaluation};
use gauntlet::report::{DatasetInfo, Meta, ModelInfo, Report, RunInfo};
use serde_json::Value;

/// The shipped MNIST test subset, as a path for `--dataset`.
pub const MNIST: &str = "datasets/data/mnist-test-1k";

/// Runs the `gauntlet` binary built for these tests.
pub fn gauntlet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(args).output().unwrap()
}

/// A fresh, empty scratch folder, unique to this test process and `name`.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gauntlet-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts exit code 2 and a one-line error containing every needle.
pub fn assert_input_error(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {e}");
    assert_eq!(e.trim().lines().count(), 1, "error must be one line: {e}");
    for n in needles {
        assert!(e.contains(n), "`{n}` missing from: {e}");
    }
}

/// Writes `text` to `dir/name` and returns the path as a string for the command line.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// The numbers of the report in `dir`: everything but timings, the run's settings and
/// provenance, which differ between two runs of one evaluation.
pub fn report_numbers(dir: &Path) -> Value {
    let mut r = json(&dir.join("report.json"));
    let o = r.as_object_mut().unwrap();
    o.remove("run");
    o.remove("provenance");
    strip_timings(&mut r);
    r
}

fn strip_timings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("time_s");
            m.remove("samples_per_second");
            m.values_mut().for_each(strip_timings);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_timings),
        _ => {}
    }
}

/// A JSON file.
pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JSON Lines file, one value per line.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Validates a JSON value against a schema in docs/.
pub fn validate(schema: &str, v: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(schema);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let id = schema["$id"].as_str().unwrap().to_string();
    let (mut schemas, mut compiler) = (boon::Schemas::new(), boon::Compiler::new());
    compiler.add_resource(&id, schema).unwrap();
    let index = compiler.compile(&id, &mut schemas).unwrap();
    if let Err(e) = schemas.validate(v, index) {
        panic!("does not match {id}: {e:#}\n{v:#}");
    }
}

/// The first `n` shipped MNIST test images.
pub fn data(n: usize) -> ImageSet {
    let mut d = samples::mnist_test_1k().unwrap();
    d.truncate(n);
    d
}

/// An L∞ evaluation of the registry specs `attacks` at the budgets `eps`.
pub fn config(attacks: &[&str], eps: &[f64], seed: u64, batch_size: usize) -> EvalConfig {
    let r = Registry::default();
    EvalConfig {
        attacks: attacks.iter().map(|a| r.create(a).unwrap()).collect(),
        norm: Norm::Linf,
        eps: eps.to_vec(),
        seed,
        batch_size,
        targets: None,
        cascade: false,
    }
}

/// The report of an evaluation of the shipped MNIST model, with placeholder run information.
pub fn report(ev: &Evaluation) -> Report {
    let meta = Meta {
        model: ModelInfo {
            source: "m".into(),
            input: [1, 28, 28],
            classes: 10,
            parameters: 0,
            preprocessing: "none".into(),
        },
        dataset: DatasetInfo { source: "d".into(), samples: ev.samples() },
        seed: 7,
        bounds: [0.0, 1.0],
        run: RunInfo { device: "cpu".into(), threads: 1, batch_size: 1, time_s: 0.0, clean_time_s: 0.0 },
    };
    Report::new(ev, meta)
}
