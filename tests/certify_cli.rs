//! `gauntlet run --certify`: certified accuracy in the report and per sample, bracketing the
//! attacks' number; gate rules on it; refusals with exit 2.

mod common;

use common::{assert_input_error, gauntlet, json, jsonl, tmpdir, write, MNIST};

#[test]
fn certified_accuracy_brackets_the_truth_and_gates_the_release() {
    let d = tmpdir("certify");
    let dir = d.join("report");
    let gate = write(
        &d,
        "gate.toml",
        "[[rule]]\nmetric = \"certified_accuracy\"\nmethod = \"crown\"\neps = 0.02\nmin = 0.5\n\n[[rule]]\nmetric = \"certified_accuracy\"\neps = 0.05\nmin = 0.9\n",
    );
    let o = gauntlet(&[
        "run",
        "--limit",
        "24",
        "--eps",
        "0.02,0.05",
        "--attack",
        "pgd",
        "--certify",
        "ibp,crown",
        "--no-checks",
        "--quiet",
        "--gate",
        &gate,
        "--report-dir",
        dir.to_str().unwrap(),
    ]);
    let err = common::stderr(&o);
    // The first rule holds; the second asks for more than can be proven at 0.05.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("PASS certified_accuracy[crown, eps=0.02]"), "{err}");
    assert!(err.contains("FAIL certified_accuracy[best, eps=0.05]"), "{err}");

    let report = json(&dir.join("report.json"));
    let rows = report["certified"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "two methods × two budgets");
    let worst: Vec<f64> =
        report["worst_case"].as_array().unwrap().iter().map(|w| w["robust_accuracy"].as_f64().unwrap()).collect();
    let row = |m: &str, k: usize| rows.iter().filter(|r| r["method"] == m).nth(k).unwrap().clone();
    for (k, &w) in worst.iter().enumerate() {
        let (ibp, crown) = (row("ibp", k), row("crown", k));
        let c = crown["certified_accuracy"].as_f64().unwrap();
        assert!(ibp["certified_accuracy"].as_f64().unwrap() <= c, "CROWN is at least as tight as IBP");
        assert!(c <= w, "certified {c} above the attacks' {w}");
        let counts = ["certified", "broken", "open"].map(|f| crown[f].as_u64().unwrap());
        assert_eq!(counts.iter().sum::<u64>(), 24);
        assert!((crown["gap"].as_f64().unwrap() - (w - c)).abs() < 1e-12);
    }
    // The shipped CNN is not trained for certification, but CROWN proves most samples at 0.02.
    assert!(row("crown", 0)["certified_accuracy"].as_f64().unwrap() >= 0.5);

    // Per sample: one certificate per method and budget, consistent with the attacks.
    let samples = jsonl(&dir.join("samples.jsonl"));
    assert_eq!(samples.len(), 24);
    for s in &samples {
        let certs = s["certificates"].as_array().unwrap();
        assert_eq!(certs.len(), 4);
        for (c, robust) in certs.iter().zip(s["robust"].as_array().unwrap().iter().cycle()) {
            match c["status"].as_str().unwrap() {
                "certified" => assert!(robust.as_bool().unwrap() && c["margin"].as_f64().unwrap() > 0.0),
                "broken" => assert!(!robust.as_bool().unwrap()),
                "open" => assert!(robust.as_bool().unwrap()),
                other => panic!("status {other}"),
            }
        }
    }
}

#[test]
fn certification_refuses_what_it_cannot_bound() {
    let d = tmpdir("certify-refusals");
    // An operator without a bound propagation rule: named, exit 2, before any work.
    let o = gauntlet(&["run", "--model", "tests/golden/onnx/vit_block.onnx", "--dataset", MNIST, "--certify", "ibp"]);
    assert_input_error(&o, &["vit_block.onnx", "node `", "run without --certify"]);
    // An unknown method, a targeted run, and a gate rule without --certify.
    assert_input_error(&gauntlet(&["run", "--certify", "alpha"]), &["--certify alpha", "ibp or crown"]);
    assert_input_error(&gauntlet(&["run", "--certify", "ibp", "--target", "3"]), &["--certify", "--target"]);
    // `inspect` says beforehand whether a model can be certified, and why not.
    let o = gauntlet(&["inspect", "tests/golden/onnx/vit_block.onnx"]);
    assert!(
        common::stdout(&o).contains("certify    not available: certified bounds: node `"),
        "{}",
        common::stdout(&o)
    );
    let o = gauntlet(&["inspect", "models/zoo/mnist-cnn.toml"]);
    assert!(common::stdout(&o).contains("certify    ibp, crown"), "{}", common::stdout(&o));
    let gate = write(&d, "gate.toml", "[[rule]]\nmetric = \"certified_accuracy\"\neps = 0.1\nmin = 0.5\n");
    assert_input_error(&gauntlet(&["run", "--gate", &gate]), &["certified_accuracy", "--certify"]);
}
