//! The release gate end to end: exit codes 0/1/2/3, --exit-zero, baseline regressions, the report
//! folder, `verify` catching a one-byte change and `diff` naming what changed.

use std::path::Path;
use std::process::Output;

use common::{gauntlet, json, stderr, stdout, tmpdir, validate, write};

mod common;

/// A fast evaluation of the shipped model: 60 samples, FGSM and 5-step PGD at ε 0.1 and 0.3.
const FAST: &[&str] = &["--limit", "60", "--attack", "fgsm", "--attack", "pgd:steps=5", "--eps", "0.1,0.3", "--quiet"];

fn run(extra: &[&str]) -> Output {
    let mut args = vec!["run"];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    gauntlet(&args)
}

#[test]
fn a_weak_model_fails_the_gate_and_a_lenient_gate_passes() {
    let d = tmpdir("verdicts");
    // The shipped model is not robust at L∞ 0.3 (PGD drives it to 0%), but fairly so at 0.1.
    let strict_gate = write(
        &d,
        "strict.toml",
        "[[rule]]\nmetric = \"robust_accuracy\"\nattack = \"pgd\"\nnorm = \"linf\"\neps = 0.3\nmin = 0.80\n\n\
         [[rule]]\nmetric = \"clean_accuracy\"\nmin = 0.9\n",
    );
    let dir = d.join("out");
    let o = run(&["--no-checks", "--gate", &strict_gate, "--report-dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("FAIL robust_accuracy[pgd, linf, eps=0.3]: robust accuracy (pgd) 0.00% (0/60) < min 80.00%"),
        "{e}"
    );
    assert!(e.contains("PASS clean_accuracy"), "{e}");
    assert!(e.contains("gate FAILED: 1 of 2 rule(s)"), "{e}");
    // Every output is there under its fixed name, and the JSON carries the verdicts.
    for name in ["report.json", "samples.jsonl", "summary.md", "junit.xml", "report.html"] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    let r = json(&dir.join("report.json"));
    validate("report.schema.json", &r);
    assert_eq!(r["schema_version"], 2);
    assert_eq!(r["gate"]["passed"], false);
    let rules = r["gate"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["passed"], false);
    assert_eq!(rules[0]["value"], 0.0);
    assert_eq!(rules[0]["threshold"], 0.8);
    assert_eq!(rules[1]["passed"], true);
    // samples.jsonl: one line per sample; PGD at 0.3 broke every clean-correct one.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 60);
    for l in &lines {
        validate("samples.schema.json", l);
    }
    let correct = lines.iter().filter(|l| l["correct"] == true).count();
    assert_eq!(correct as u64, r["clean_correct"].as_u64().unwrap());
    for l in lines.iter().filter(|l| l["correct"] == true) {
        let pgd: Vec<_> = l["results"].as_array().unwrap().iter().filter(|x| x["attack"] == "pgd").collect();
        assert_eq!(pgd.len(), 2);
        assert_eq!(pgd[1]["broken"], true, "{l}");
        assert_ne!(pgd[1]["adv_pred"], l["label"]);
        assert!(pgd[1]["linf"].as_f64().unwrap() <= 0.3 * (1.0 + 1e-6));
    }

    // --exit-zero turns the failure into 0 and says so.
    let o = run(&["--no-checks", "--gate", &strict_gate, "--exit-zero"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("--exit-zero: exiting 0 instead of 1"));

    // A gate the model meets passes with exit 0, judged on the Wilson lower bound.
    let lenient = write(
        &d,
        "lenient.toml",
        "[defaults]\nwilson = true\n\n[[rule]]\nmetric = \"robust_accuracy\"\neps = 0.1\nmin = 0.5\n\n\
         [[rule]]\nmetric = \"drop\"\neps = 0.1\nmax_points = 40\n",
    );
    let o = run(&["--no-checks", "--gate", &lenient]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("Wilson 95% lower"), "{}", stderr(&o));
}

#[test]
fn gate_errors_exit_2_before_the_evaluation() {
    let d = tmpdir("errors");
    let cases: &[(&str, &[&str])] = &[
        (
            "[[rule]]\nmetric = \"robust_accuracy\"\nattack = \"apgd\"\neps = 0.3\nmin = 0.5\n",
            &["attack `apgd` does not run"],
        ),
        ("[[rule]]\nmetric = \"robust_accuracy\"\neps = 0.2\nmin = 0.5\n", &["eps 0.2 is not among the budgets run"]),
        ("[[rule]]\nmetric = \"regression\"\nmax_decrease_points = 1\n", &["needs --baseline"]),
        ("[[rule]]\nmetric = \"robust_accuracy\"\neps = 0.3\nmin = 80\n", &["fractions"]),
        ("[[rule]]\nmetrc = \"clean_accuracy\"\n", &["line 2", "metrc"]),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let g = write(&d, &format!("g{i}.toml"), text);
        let o = run(&["--no-checks", "--gate", &g]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{text}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
        assert!(e.contains(&format!("g{i}.toml")) || e.contains("gate rule"), "{e}");
        for n in *needles {
            assert!(e.contains(n), "`{n}` missing from: {e}");
        }
        assert!(o.stdout.is_empty(), "no report on a usage error");
    }
    let o = run(&["--gate", d.join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.toml"));
    // A corrupt baseline is named.
    let g = write(&d, "reg.toml", "[[rule]]\nmetric = \"regression\"\neps = 0.3\nmax_decrease_points = 1\n");
    let bad = write(&d, "bad.json", "{\"schema_version\": 2");
    let o = run(&["--gate", &g, "--baseline", &bad]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.json: not a gauntlet report.json"), "{}", stderr(&o));
}

#[test]
fn a_regression_against_the_baseline_is_caught_and_diff_names_it() {
    let d = tmpdir("regression");
    let gate = write(
        &d,
        "gate.toml",
        "[[rule]]\nname = \"pgd at 0.1 may not lose more than 2 points\"\nmetric = \"regression\"\nattack = \"pgd\"\n\
         eps = 0.1\nmax_decrease_points = 2\n\n[[rule]]\nmetric = \"regression\"\nof = \"clean_accuracy\"\n\
         max_decrease_relative = 0.01\n",
    );
    // The baseline: a 1-step PGD. The candidate: a 20-step PGD stands in for a model that lost
    // robustness; the gate compares the numbers.
    let old = d.join("old.json");
    let o = gauntlet(&[
        "run",
        "--limit",
        "60",
        "--attack",
        "fgsm",
        "--attack",
        "pgd:steps=1",
        "--eps",
        "0.1,0.3",
        "--quiet",
        "--no-checks",
        "--output",
        old.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let new = d.join("new.json");
    let o = gauntlet(&[
        "run",
        "--limit",
        "60",
        "--attack",
        "fgsm",
        "--attack",
        "pgd:steps=20",
        "--eps",
        "0.1,0.3",
        "--quiet",
        "--no-checks",
        "--gate",
        &gate,
        "--baseline",
        old.to_str().unwrap(),
        "--output",
        new.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    let (o_r, n_r) = (json(&old), json(&new));
    let find = |r: &serde_json::Value| {
        r["results"].as_array().unwrap().iter().find(|x| x["attack"] == "pgd" && x["eps"] == 0.1).unwrap()
            ["robust_accuracy"]
            .as_f64()
            .unwrap()
    };
    let drop_pp = (find(&o_r) - find(&n_r)) * 100.0;
    assert!(drop_pp > 2.0, "the stronger attack must lower robust accuracy by > 2 pp, got {drop_pp}");
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("FAIL pgd at 0.1 may not lose more than 2 points"), "{e}");
    assert!(e.contains("decrease > max_decrease_points 2"), "{e}");
    assert!(e.contains("PASS regression[clean_accuracy]"), "{e}");
    validate("report.schema.json", &n_r);
    let rule = &n_r["gate"]["rules"][0];
    assert_eq!(rule["unit"], "points");
    assert!((rule["compared"].as_f64().unwrap() - drop_pp).abs() < 1e-9);
    assert_eq!(rule["baseline"].as_f64().unwrap(), find(&o_r));

    let o = gauntlet(&["diff", old.to_str().unwrap(), new.to_str().unwrap(), "--gate", &gate]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains(&format!("({:+.2} pp)", -drop_pp)), "{s}");
    assert!(s.contains("FAIL  pgd at 0.1 may not lose more than 2 points"), "{s}");
    assert!(s.contains("configuration CHANGED (attacks)"), "{s}");
    assert!(s.contains("model files same, dataset files same"), "{s}");
}

#[test]
fn verify_catches_a_model_changed_by_one_byte() {
    let d = tmpdir("verify");
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/zoo");
    for f in ["mnist-cnn.toml", "mnist-cnn.safetensors"] {
        std::fs::copy(zoo.join(f), d.join(f)).unwrap();
    }
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/data/mnist-test-1k");
    let (model, data) = (d.join("mnist-cnn.toml"), data.to_str().unwrap().to_string());
    let report = d.join("report.json");
    let o = gauntlet(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        &data,
        "--limit",
        "20",
        "--attack",
        "fgsm",
        "--eps",
        "0.1",
        "--quiet",
        "--no-checks",
        "--output",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = json(&report);
    let weights = std::fs::read(d.join("mnist-cnn.safetensors")).unwrap();
    assert_eq!(r["provenance"]["model_files"][1]["bytes"], weights.len());
    assert_eq!(r["provenance"]["model_files"].as_array().unwrap().len(), 2);
    assert_eq!(r["provenance"]["dataset_files"].as_array().unwrap().len(), 2);
    assert_eq!(r["provenance"]["config"]["limit"], 20);
    assert_eq!(r["provenance"]["config_sha256"].as_str().unwrap().len(), 64);

    let verify =
        || gauntlet(&["verify", report.to_str().unwrap(), "--model", model.to_str().unwrap(), "--dataset", &data]);
    let o = verify();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("speaks for these files"));

    let mut changed = weights.clone();
    let at = changed.len() - 7;
    changed[at] ^= 1;
    std::fs::write(d.join("mnist-cnn.safetensors"), &changed).unwrap();
    let o = verify();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let s = stdout(&o);
    assert!(s.contains("CHANGED  model") && s.contains("mnist-cnn.safetensors"), "{s}");
    assert!(s.contains("NOT verified") && s.contains("model files differ"), "{s}");
    std::fs::write(d.join("mnist-cnn.safetensors"), &weights).unwrap();

    // A report whose configuration was edited after the run is caught too.
    let text = std::fs::read_to_string(&report).unwrap().replace("\"limit\": 20", "\"limit\": 21");
    std::fs::write(&report, text).unwrap();
    let o = verify();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("the report was edited"));
}

#[test]
fn strict_integrity_failure_exits_3_even_with_a_passing_gate() {
    let d = tmpdir("strict");
    let g = write(&d, "g.toml", "[[rule]]\nmetric = \"clean_accuracy\"\nmin = 0.5\n\n[[rule]]\nmetric = \"check\"\n");
    // A PGD that barely moves fails `iterative_vs_single_step` and `unbounded_budget`.
    let o = gauntlet(&[
        "run",
        "--limit",
        "60",
        "--attack",
        "fgsm",
        "--attack",
        "pgd:steps=5,step=0.001",
        "--eps",
        "0.1,0.3",
        "--quiet",
        "--check-samples",
        "30",
        "--gate",
        &g,
        "--strict",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(e.contains("PASS clean_accuracy") && e.contains("FAIL check[all]"), "{e}");
}

#[test]
fn saved_adversarial_examples_are_verified_inputs() {
    use ndarray::{Array1, Array4};
    use ndarray_npy::NpzReader;
    let d = tmpdir("adv");
    let dir = d.join("out");
    let o = run(&["--no-checks", "--report-dir", dir.to_str().unwrap(), "--save-adversarial", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let adv = dir.join("adversarial");
    let mut npz = NpzReader::new(std::fs::File::open(adv.join("adversarial.npz")).unwrap()).unwrap();
    let x_adv: Array4<f32> = npz.by_name("x_adv").unwrap();
    let x_clean: Array4<f32> = npz.by_name("x_clean").unwrap();
    let eps: Array1<f64> = npz.by_name("eps").unwrap();
    let label: Array1<i64> = npz.by_name("label").unwrap();
    let adv_pred: Array1<i64> = npz.by_name("adv_pred").unwrap();
    let index: Array1<i64> = npz.by_name("index").unwrap();
    let attack: Array1<i64> = npz.by_name("attack").unwrap();
    // 3 per attack, two attacks.
    assert_eq!(x_adv.shape(), &[6, 1, 28, 28]);
    let attacks = std::fs::read_to_string(adv.join("attacks.txt")).unwrap();
    assert_eq!(attacks, "fgsm\npgd\n");
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for j in 0..6 {
        let linf = x_adv
            .index_axis(ndarray::Axis(0), j)
            .iter()
            .zip(x_clean.index_axis(ndarray::Axis(0), j).iter())
            .fold(0f32, |m, (a, c)| m.max((a - c).abs()));
        assert!(f64::from(linf) <= eps[j] * (1.0 + 1e-6), "example {j}: ‖δ‖∞ {linf} > ε {}", eps[j]);
        assert!(x_adv.index_axis(ndarray::Axis(0), j).iter().all(|v| (0.0..=1.0).contains(v)));
        assert_ne!(adv_pred[j], label[j]);
        // The record in samples.jsonl agrees.
        let s = &samples[index[j] as usize];
        let name = if attack[j] == 0 { "fgsm" } else { "pgd" };
        let hit = s["results"].as_array().unwrap().iter().find(|r| r["attack"] == name && r["eps"] == eps[j]).unwrap();
        assert_eq!(hit["broken"], true);
        assert_eq!(hit["adv_pred"], adv_pred[j]);
        for kind in ["clean", "adv", "diff"] {
            let png = adv.join(format!("{:05}-{name}-{kind}.png", index[j]));
            let img = image::open(&png).unwrap();
            assert_eq!((img.width(), img.height()), (28, 28), "{}", png.display());
        }
    }
    // The clean PNG holds the clean pixels.
    let img = image::open(adv.join(format!("{:05}-fgsm-clean.png", index[0]))).unwrap().to_luma8();
    let c = x_clean.index_axis(ndarray::Axis(0), 0);
    for (p, v) in img.pixels().zip(c.iter()) {
        assert_eq!(p.0[0], (v * 255.0).round() as u8);
    }
}

#[test]
fn bench_ranks_models_by_worst_case_robust_accuracy() {
    let d = tmpdir("bench");
    // A second, weaker model: a linear classifier on 7×7 averages, trained in seconds.
    let arch = write(
        &d,
        "arch.toml",
        "input = [1, 28, 28]\nclasses = 10\nlayers = [{ op = \"avgpool2d\", kernel = 4 }, { op = \"flatten\" }, \
         { op = \"linear\", weight = \"fc\", out = 10 }]\n",
    );
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/data/mnist-test-1k");
    let data = data.to_str().unwrap();
    let tiny = d.join("tiny.toml");
    let o = gauntlet(&[
        "train",
        "--spec",
        &arch,
        "--dataset",
        data,
        "--out",
        tiny.to_str().unwrap(),
        "--epochs",
        "2",
        "--lr",
        "0.01",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = d.join("board");
    let o = gauntlet(&[
        "bench",
        tiny.to_str().unwrap(),
        "builtin:mnist-cnn",
        "--dataset",
        data,
        "--limit",
        "60",
        "--attack",
        "fgsm",
        "--attack",
        "pgd:steps=5",
        "--eps",
        "0.05,0.1",
        "--no-checks",
        "--quiet",
        "--report-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let board = json(&dir.join("leaderboard.json"));
    let board = board.as_array().unwrap();
    assert_eq!(board.len(), 2);
    // The ranking follows each model's own report: worst case at the largest ε, descending.
    let mut keys = Vec::new();
    for (i, e) in board.iter().enumerate() {
        assert_eq!(e["rank"], i + 1);
        let r = json(&dir.join(e["report"].as_str().unwrap()));
        let worst = r["worst_case"].as_array().unwrap().last().unwrap()["robust_accuracy"].as_f64().unwrap();
        assert_eq!(e["worst_case"][1]["robust_accuracy"].as_f64().unwrap(), worst);
        assert_eq!(e["clean_accuracy"], r["clean_accuracy"]);
        keys.push(worst);
    }
    assert!(keys[0] >= keys[1], "{keys:?}");
    for name in ["leaderboard.md", "leaderboard.html", "tiny/report.json", "mnist-cnn/report.html"] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    // The Markdown leaderboard is printed and written, best model first.
    let md = std::fs::read_to_string(dir.join("leaderboard.md")).unwrap();
    assert_eq!(stdout(&o), md);
    let label = |e: &serde_json::Value| e["report"].as_str().unwrap().split('/').next().unwrap().to_string();
    let (first, second) = (label(&board[0]), label(&board[1]));
    let (a, b) = (md.find(&first).unwrap(), md.find(&second).unwrap());
    assert!(a < b, "{md}");
    // A missing model fails before any evaluation, naming the file.
    let o = gauntlet(&["bench", "nope.toml", "--dataset", data, "--report-dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));
}
