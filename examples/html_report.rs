//! Renders the HTML report (and a two-entry leaderboard) for a small evaluation of the shipped MNIST
//! model: FGSM and PGD at three L∞ budgets, integrity checks, a release gate and kept adversarial
//! examples.
//!
//! `cargo run --example html_report -- OUT_DIR [SAMPLES]` writes `OUT_DIR/report.html` and
//! `OUT_DIR/leaderboard.html`; `bash tests/browser/check_html.sh OUT_DIR/report.html` checks them in
//! a browser.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use gauntlet::attacks::{Norm, Registry};
use gauntlet::checks;
use gauntlet::datasets::samples as datasets;
use gauntlet::eval::{evaluate_keeping, EvalConfig, Silent};
use gauntlet::gate::Gate;
use gauntlet::models::{zoo, Classifier};
use gauntlet::report::html;
use gauntlet::report::{DatasetInfo, Meta, ModelInfo, Report, RunInfo};

const GATE: &str = r#"
[[rule]]
metric = "clean_accuracy"
min = 0.9

[[rule]]
metric = "robust_accuracy"
attack = "pgd"
norm = "linf"
eps = 0.1
min = 0.6

[[rule]]
metric = "check"
"#;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().context("usage: html_report OUT_DIR [SAMPLES]")?);
    let n: usize = args.next().map_or(Ok(100), |s| s.parse()).context("SAMPLES must be a number")?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    let model = zoo::mnist_cnn(&Device::Cpu)?;
    let mut data = datasets::mnist_test_1k()?;
    data.truncate(n);
    let registry = Registry::default();
    let run = |attacks: &[&str], keep: usize| -> anyhow::Result<(Report, Vec<_>, Vec<_>)> {
        let cfg = EvalConfig {
            attacks: attacks.iter().map(|a| registry.create(a)).collect::<Result<_, _>>()?,
            norm: Norm::Linf,
            eps: vec![0.05, 0.1, 0.2],
            seed: 0,
            batch_size: 64,
            targets: None,
            cascade: false,
        };
        let ev = evaluate_keeping(&model, &data, &cfg, &Silent, keep)?;
        let bounds = model.bounds();
        let meta = Meta {
            model: ModelInfo {
                source: "builtin:mnist-cnn".into(),
                input: model.input_shape(),
                classes: model.num_classes(),
                parameters: model.parameter_count(),
                preprocessing: "none".into(),
            },
            dataset: DatasetInfo { source: data.source.clone(), samples: data.labels.len() },
            seed: 0,
            bounds: [bounds.lo, bounds.hi],
            run: RunInfo {
                device: "cpu".into(),
                threads: candle_core::utils::get_num_threads(),
                batch_size: 64,
                time_s: ev.total_seconds,
                clean_time_s: ev.clean_seconds,
            },
        };
        let mut report = Report::new(&ev, meta);
        report.checks = checks::run(&model, &data, &cfg, &ev, &registry, 16)?;
        let gate = Gate::parse(GATE).map_err(anyhow::Error::msg)?;
        report.gate = Some(gate.evaluate("gate.toml", &report, None));
        Ok((report, ev.sample_records(), ev.adversarial_examples(&data)?))
    };
    let (report, records, examples) = run(&["fgsm", "pgd:steps=10"], 6)?;
    let path = out.join("report.html");
    std::fs::write(&path, html::report(&report, &records, &examples))?;
    println!("{}", path.display());

    let (weak, _, _) = run(&["fgsm", "pgd:steps=2"], 0)?;
    let entries = [("mnist-cnn, PGD-10".to_string(), &report), ("mnist-cnn, PGD-2".to_string(), &weak)];
    let path = out.join("leaderboard.html");
    std::fs::write(&path, html::leaderboard(&entries))?;
    println!("{}", path.display());
    Ok(())
}
