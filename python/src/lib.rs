//! `gauntlet._native`: the command line of the Rust library, callable from Python. The Python
//! side (`python/gauntlet/`) builds the arguments, runs them here with the GIL released, and
//! reads the report files they write; signals stay Python's (Ctrl-C raises KeyboardInterrupt
//! there, which asks the run to stop before its next batch).

use pyo3::prelude::*;

/// Runs `gauntlet ARGS...` (without the program name) in this process and returns
/// `(exit status, error line or None, whether the error named a missing file)`. With `silent`,
/// the report is not printed on stdout nor the error line on stderr.
#[pyfunction]
#[pyo3(signature = (args, silent=false))]
fn run_cli(py: Python<'_>, args: Vec<String>, silent: bool) -> (i32, Option<String>, bool) {
    gauntlet::cli::interrupt::handled_outside();
    gauntlet::cli::set_silent(silent);
    let argv: Vec<String> = std::iter::once("gauntlet".to_string()).chain(args).collect();
    let status = py.allow_threads(|| gauntlet::commands::main(argv));
    let (line, missing) = match gauntlet::commands::last_error() {
        Some((line, missing)) => (Some(line), missing),
        None => (None, false),
    };
    (status.code(), line, missing)
}

/// Forgets any earlier stop request; called before a command starts, so that a Ctrl-C that
/// arrives while the command is starting still stops it.
#[pyfunction]
fn prepare() {
    gauntlet::cli::interrupt::handled_outside();
    gauntlet::cli::interrupt::clear();
}

/// Asks the running command to stop before its next batch (finished batches stay in the
/// report folder's checkpoint).
#[pyfunction]
fn request_stop() {
    gauntlet::cli::interrupt::request();
}

/// Judges the report at `report` (report.json) by the gate file `gate` (TOML text in a file),
/// with an optional baseline report.json; returns the outcome as JSON. Raises ValueError with
/// the command line's message for a bad gate, report or baseline.
#[pyfunction]
#[pyo3(signature = (report, gate, baseline=None))]
fn judge(report: &str, gate: &str, baseline: Option<&str>) -> PyResult<String> {
    use gauntlet::gate::Gate;
    use gauntlet::report::Report;
    use std::path::Path;
    let bad = |e: gauntlet::Error| pyo3::exceptions::PyValueError::new_err(e.to_string());
    let rules = Gate::read(Path::new(gate)).map_err(bad)?;
    let report_data = Report::read(Path::new(report)).map_err(bad)?;
    let base = match baseline {
        Some(b) => Some((b.to_string(), Report::read(Path::new(b)).map_err(bad)?)),
        None => None,
    };
    let attacks: Vec<String> = report_data.results.iter().map(|r| r.attack.clone()).collect();
    rules.check_against(&attacks, report_data.norm, &report_data.eps, base.is_some()).map_err(bad)?;
    let mut methods: Vec<&str> = report_data.certified.iter().map(|c| c.method.as_str()).collect();
    methods.dedup();
    rules.check_certify(&methods).map_err(bad)?;
    let outcome = rules.evaluate(gate, &report_data, base.as_ref().map(|(p, r)| (p.as_str(), r)));
    serde_json::to_string(&outcome).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// Loads the model at `model` as `gauntlet run` would and returns, for the batch `images`
/// (float32 values of shape `shape` = (N, C, H, W), pixel space) and `labels`, the logits
/// (N·K values) and the input gradient of the summed cross-entropy (N·C·H·W values).
#[pyfunction]
fn logits_and_grad(
    py: Python<'_>,
    model: &str,
    images: Vec<f32>,
    shape: [usize; 4],
    labels: Vec<u32>,
) -> PyResult<(Vec<f32>, Vec<f32>)> {
    use gauntlet::models::{Goal, LoadOptions, Loss};
    let bad = |e: String| pyo3::exceptions::PyValueError::new_err(e);
    py.allow_threads(|| {
        let device = candle_core::Device::Cpu;
        let (net, _) = gauntlet::run::load_model(Some(std::path::Path::new(model)), &device, &LoadOptions::default())
            .map_err(|e| e.to_string())?;
        let x = candle_core::Tensor::from_vec(images, shape.to_vec(), &device).map_err(|e| e.to_string())?;
        let out = net.loss_and_grad(&x, &Goal::untargeted(labels), Loss::CrossEntropy).map_err(|e| e.to_string())?;
        let flat = |t: &candle_core::Tensor| -> Result<Vec<f32>, String> {
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string())
        };
        Ok((flat(&out.logits)?, flat(&out.grad)?))
    })
    .map_err(bad)
}

/// The version of the Rust library inside.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(prepare, m)?)?;
    m.add_function(wrap_pyfunction!(request_stop, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(judge, m)?)?;
    m.add_function(wrap_pyfunction!(logits_and_grad, m)?)?;
    Ok(())
}
