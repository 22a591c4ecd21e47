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

/// A gate's verdict on `rule` (by name) in a report.json.
fn verdict<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let rules = r["gate"]["rules"].as_array().unwrap();
    rules.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no verdict `{name}` in {rules:#?}"))
}

/// Robust accuracy of `attack` (or `worst`) at ε in a report.json.
fn robust(r: &serde_json::Value, attack: &str, eps: f64) -> f64 {
    let row = if attack == "worst" {
        r["worst_case"].as_array().unwrap().iter().find(|x| x["eps"] == eps)
    } else {
        r["results"].as_array().unwrap().iter().find(|x| x["attack"] == attack && x["eps"] == eps)
    };
    row.unwrap()["robust_accuracy"].as_f64().unwrap()
}

#[test]
fn max_bounds_and_relative_drops_are_judged_on_the_reports_numbers() {
    let d = tmpdir("bounds");
    let gate = write(
        &d,
        "g.toml",
        "[[rule]]\nname = \"clean at most 90%\"\nmetric = \"clean_accuracy\"\nmax = 0.9\n\n\
         [[rule]]\nname = \"pgd at 0.3 at most 5%\"\nmetric = \"robust_accuracy\"\nattack = \"pgd\"\neps = 0.3\nmax = 0.05\n\n\
         [[rule]]\nname = \"fgsm drop at most a twentieth\"\nmetric = \"drop\"\nattack = \"fgsm\"\neps = 0.1\nmax_relative = 0.05\n\n\
         [[rule]]\nname = \"fgsm drop at most half\"\nmetric = \"drop\"\nattack = \"fgsm\"\neps = 0.1\nmax_relative = 0.5\n",
    );
    let out = d.join("r.json");
    let o = run(&["--no-checks", "--gate", &gate, "--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json(&out);
    validate("report.schema.json", &r);
    let clean = r["clean_accuracy"].as_f64().unwrap();
    assert!(clean > 0.9, "the shipped model is better than 90% clean: {clean}");
    let v = verdict(&r, "clean at most 90%");
    assert_eq!(
        (v["passed"].as_bool(), v["op"].as_str(), v["unit"].as_str()),
        (Some(false), Some("<="), Some("fraction"))
    );
    assert_eq!(
        (v["value"].as_f64(), v["compared"].as_f64(), v["threshold"].as_f64()),
        (Some(clean), Some(clean), Some(0.9))
    );
    assert!(stderr(&o).contains("FAIL clean at most 90%"), "{}", stderr(&o));

    let pgd = robust(&r, "pgd", 0.3);
    let v = verdict(&r, "pgd at 0.3 at most 5%");
    assert_eq!(v["passed"].as_bool(), Some(pgd <= 0.05));
    assert_eq!((v["value"].as_f64(), v["threshold"].as_f64(), v["op"].as_str()), (Some(pgd), Some(0.05), Some("<=")));
    assert!(v["passed"].as_bool().unwrap(), "PGD at 0.3 leaves {pgd}");

    // Drop relative to clean accuracy, by hand from the report's accuracies.
    let fgsm = robust(&r, "fgsm", 0.1);
    let (points, relative) = ((clean - fgsm) * 100.0, (clean - fgsm) / clean);
    assert!(relative > 0.05 && relative < 0.5, "FGSM at 0.1: relative drop {relative}");
    for (name, t, pass) in [("fgsm drop at most a twentieth", 0.05, false), ("fgsm drop at most half", 0.5, true)] {
        let v = verdict(&r, name);
        assert_eq!(v["passed"].as_bool(), Some(pass), "{v}");
        assert_eq!(
            (v["unit"].as_str(), v["op"].as_str(), v["threshold"].as_f64()),
            (Some("relative"), Some("<="), Some(t))
        );
        assert!((v["value"].as_f64().unwrap() - points).abs() < 1e-9, "{v}");
        assert!((v["compared"].as_f64().unwrap() - relative).abs() < 1e-12, "{v}");
    }
    assert_eq!(r["gate"]["passed"], false);
    assert!(stderr(&o).contains("gate FAILED: 2 of 4 rule(s)"), "{}", stderr(&o));
}

#[test]
fn a_regression_rule_without_eps_gives_one_verdict_per_eps() {
    let d = tmpdir("per-eps");
    let old = d.join("old.json");
    let base = gauntlet(&[
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
    assert_eq!(base.status.code(), Some(0), "{}", stderr(&base));
    let gate = write(&d, "g.toml", "[[rule]]\nmetric = \"regression\"\nattack = \"pgd\"\nmax_decrease_points = 2\n");
    let new = d.join("new.json");
    let o =
        run(&["--no-checks", "--gate", &gate, "--baseline", old.to_str().unwrap(), "--output", new.to_str().unwrap()]);
    let (o_r, n_r) = (json(&old), json(&new));
    validate("report.schema.json", &n_r);
    let rules = n_r["gate"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{rules:#?}");
    let mut failed = 0;
    for (v, eps) in rules.iter().zip([0.1, 0.3]) {
        let (then, now) = (robust(&o_r, "pgd", eps), robust(&n_r, "pgd", eps));
        let decrease = (then - now) * 100.0;
        assert_eq!(v["name"], format!("regression[robust_accuracy, pgd] eps={eps}"));
        assert_eq!(v["eps"], eps);
        assert_eq!((v["baseline"].as_f64(), v["value"].as_f64()), (Some(then), Some(now)), "{v}");
        assert!((v["compared"].as_f64().unwrap() - decrease).abs() < 1e-9, "{v}");
        assert_eq!((v["threshold"].as_f64(), v["unit"].as_str()), (Some(2.0), Some("points")));
        assert_eq!(v["passed"].as_bool(), Some(decrease <= 2.0 + 1e-9), "{v}");
        failed += usize::from(decrease > 2.0 + 1e-9);
    }
    // 5-step PGD is stronger than 1-step PGD at ε 0.1 (see the regression test above).
    assert!(failed >= 1);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("gate FAILED: {failed} of 2 rule(s)")), "{}", stderr(&o));
}

#[test]
fn a_check_rule_with_allow_warn_false_fails_on_a_warning() {
    use gauntlet::gate::Gate;
    use gauntlet::report::{Check, Status};
    let model = gauntlet::models::zoo::mnist_cnn(&candle_core::Device::Cpu).unwrap();
    let ev = gauntlet::eval::evaluate(
        &model,
        &common::data(20),
        &common::config(&["fgsm"], &[0.1], 0, 20),
        &gauntlet::eval::Silent,
    )
    .unwrap();
    let mut report = common::report(&ev);
    report.checks = vec![
        Check { name: "gradients".into(), status: Status::Pass, detail: "fine".into() },
        Check { name: "more_iterations".into(), status: Status::Warn, detail: "3 more broken".into() },
    ];
    let gate = Gate::parse(
        "[[rule]]\nname = \"lenient\"\nmetric = \"check\"\n\n\
         [[rule]]\nname = \"strict\"\nmetric = \"check\"\nallow_warn = false\n\n\
         [[rule]]\nname = \"strict on gradients\"\nmetric = \"check\"\ncheck = \"gradients\"\nallow_warn = false\n",
    )
    .unwrap();
    let g = gate.evaluate("g.toml", &report, None);
    let passed: Vec<(&str, bool)> = g.rules.iter().map(|v| (v.name.as_str(), v.passed)).collect();
    assert_eq!(passed, [("lenient", true), ("strict", false), ("strict on gradients", true)]);
    assert!(!g.passed);
    assert_eq!(g.rules[1].message, "WARN more_iterations: 3 more broken");
    assert_eq!(g.rules[0].message, "2 check(s) passed (WARN allowed)");
    // A FAIL fails even when warnings are allowed.
    report.checks[0].status = Status::Fail;
    let g = gate.evaluate("g.toml", &report, None);
    assert_eq!(g.rules.iter().map(|v| v.passed).collect::<Vec<_>>(), [false, false, false]);
}

#[test]
fn verify_catches_a_changed_dataset() {
    let d = tmpdir("verify-data");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(common::MNIST);
    let data = d.join("mnist");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(src.join(f), data.join(f)).unwrap();
    }
    let report = d.join("report.json");
    let data_s = data.to_str().unwrap();
    let o = gauntlet(&[
        "run",
        "--dataset",
        data_s,
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
    let verify = || gauntlet(&["verify", report.to_str().unwrap(), "--dataset", data_s]);
    let o = verify();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let labels = data.join("t10k-labels-idx1-ubyte.gz");
    let mut bytes = std::fs::read(&labels).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&labels, &bytes).unwrap();
    let o = verify();
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(s.lines().any(|l| l.starts_with("CHANGED  dataset") && l.contains("t10k-labels-idx1-ubyte.gz")), "{s}");
    assert!(s.lines().any(|l| l.starts_with("ok       dataset") && l.contains("t10k-images-idx3-ubyte.gz")), "{s}");
    assert!(s.contains("NOT verified") && s.contains("(dataset files differ)"), "{s}");
}

#[test]
fn diff_compares_gates_configurations_and_samples() {
    let d = tmpdir("diff");
    let report = |name: &str, args: &[&str]| {
        let p = d.join(name);
        let mut all = vec!["run", "--attack", "fgsm", "--eps", "0.1,0.3", "--quiet", "--no-checks"];
        all.extend_from_slice(args);
        all.extend(["--output", p.to_str().unwrap()]);
        let o = gauntlet(&all);
        assert!(o.status.code() == Some(0) || o.status.code() == Some(1), "{}", stderr(&o));
        p
    };
    // A threshold between the two runs' FGSM robust accuracy at 0.1 (60 and 30 samples).
    let (a, b) = (report("a0.json", &["--limit", "60"]), report("b0.json", &["--limit", "30"]));
    let (ra, rb) = (robust(&json(&a), "fgsm", 0.1), robust(&json(&b), "fgsm", 0.1));
    assert_ne!(ra, rb, "the subsets must differ in robust accuracy");
    let t = (ra + rb) / 2.0;
    let gate = write(
        &d,
        "g.toml",
        &format!(
            "[[rule]]\nname = \"fgsm floor\"\nmetric = \"robust_accuracy\"\nattack = \"fgsm\"\neps = 0.1\nmin = {t}\n"
        ),
    );
    let (a, b) =
        (report("a.json", &["--limit", "60", "--gate", &gate]), report("b.json", &["--limit", "30", "--gate", &gate]));
    let (ja, jb) = (json(&a), json(&b));
    let diff = |x: &Path, y: &Path, extra: &[&str]| {
        let mut args = vec!["diff", x.to_str().unwrap(), y.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = gauntlet(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };

    // Different samples, the gates the reports carry: the verdict flips and is marked.
    let s = diff(&a, &b, &[]);
    assert!(s.contains("samples: 60 → 30"), "{s}");
    let pass = |r: &serde_json::Value| verdict(r, "fgsm floor")["passed"].as_bool().unwrap();
    assert_eq!(pass(&ja), ra >= t);
    assert_ne!(pass(&ja), pass(&jb));
    let v = |p: bool| if p { "PASS" } else { "FAIL" };
    let mark = if pass(&ja) { "newly failing" } else { "newly passing" };
    let line = s.lines().find(|l| l.contains("fgsm floor")).unwrap_or_else(|| panic!("{s}"));
    assert!(
        line.starts_with(&format!("  {} → {}  fgsm floor: ", v(pass(&ja)), v(pass(&jb)))) && line.ends_with(mark),
        "{line}"
    );
    assert!(s.contains("gate (") && s.contains(&format!("): {} → {}", v(pass(&ja)), v(pass(&jb)))), "{s}");
    let fgsm_line = s.lines().find(|l| l.starts_with("  fgsm linf 0.1 ")).unwrap_or_else(|| panic!("{s}"));
    assert!(fgsm_line.contains(&format!("({:+.2} pp)", (rb - ra) * 100.0)), "{fgsm_line}");
    assert!(s.contains("dataset files same") && s.contains("configuration CHANGED (") && s.contains("limit"), "{s}");

    // A report against itself: nothing changed.
    let s = diff(&a, &a, &[]);
    assert!(!s.contains("samples:"), "{s}");
    assert!(s.contains("integrity checks: unchanged") && s.contains("configuration same"), "{s}");
    assert!(s.lines().filter(|l| l.contains(" pp)")).all(|l| l.contains("(+0.00 pp)")), "{s}");
    assert!(!s.contains("newly"), "{s}");

    // With --gate, both reports are judged by that gate (OLD as NEW's baseline), overriding theirs.
    let regress = write(&d, "r.toml", "[[rule]]\nname = \"no loss\"\nmetric = \"regression\"\nattack = \"fgsm\"\neps = 0.1\nmax_decrease_points = 0\n");
    let s = diff(&a, &b, &["--gate", &regress]);
    assert!(!s.contains("fgsm floor"), "{s}");
    let decrease = (ra - rb) * 100.0;
    let line = s.lines().find(|l| l.contains("no loss")).unwrap_or_else(|| panic!("{s}"));
    assert!(line.contains(&format!("→ {}  no loss", v(decrease <= 1e-9))), "{decrease}: {line}");
}
