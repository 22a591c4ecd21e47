//! The binary end to end: reports, exit codes, one-line errors, no half-written output.

mod common;

use common::{assert_input_error, gauntlet, json, jsonl, stderr, tmpdir};

#[test]
fn json_report_has_the_documented_fields() {
    let d = tmpdir("json");
    let out = d.join("report.json");
    let o = gauntlet(&[
        "run",
        "--limit",
        "40",
        "--attack",
        "fgsm",
        "--attack",
        "pgd:steps=5",
        "--eps",
        "0.1,8/255",
        "--format",
        "json",
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(stdout["results"], file["results"]);
    let r = &file;
    assert_eq!(r["schema_version"], 2);
    assert_eq!(r["samples"], 40);
    assert_eq!(r["seed"], 0);
    assert!(r["clean_accuracy"].as_f64().unwrap() > 0.9);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["attack"], "fgsm");
    assert_eq!(results[0]["norm"], "linf");
    assert!((results[0]["eps"].as_f64().unwrap() - 8.0 / 255.0).abs() < 1e-12, "ascending order");
    assert_eq!(results[2]["attack"], "pgd");
    for res in results {
        let ra = res["robust_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ra));
        if !res["perturbation"].is_null() {
            for norm in ["linf", "l2"] {
                for stat in ["mean", "median", "max"] {
                    assert!(res["perturbation"][norm][stat].is_number());
                }
            }
            assert!(
                res["perturbation"]["linf"]["max"].as_f64().unwrap() <= res["eps"].as_f64().unwrap() * (1.0 + 1e-6)
            );
        }
    }
    let wc = r["worst_case"].as_array().unwrap();
    assert_eq!(wc.len(), 2);
    assert_eq!(wc[0]["norm"], "linf");
    assert!(wc[1]["robust_accuracy"].as_f64().unwrap() <= results[3]["robust_accuracy"].as_f64().unwrap());
}

#[test]
fn table_report_and_l2() {
    let o = gauntlet(&["run", "--limit", "20", "--norm", "l2", "--eps", "1.0", "--attack", "pgd:steps=5", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("clean accuracy") && t.contains("pgd") && t.contains("l2") && t.contains("worst"), "{t}");
}

#[test]
fn usage_errors_exit_2() {
    assert_input_error(&gauntlet(&["run", "--no-such-flag"]), &["--no-such-flag"]);
    assert_input_error(&gauntlet(&["run", "--batch-size", "many"]), &["many"]);
    assert_input_error(&gauntlet(&["run", "--attack", "pgd:stepz=3"]), &["stepz", "steps"]);
    assert_input_error(&gauntlet(&["run", "--attack", "nope"]), &["unknown attack `nope`", "fgsm"]);
    assert_input_error(&gauntlet(&["run", "--eps", "0.1,abc"]), &["abc"]);
    assert_input_error(&gauntlet(&["run", "--eps=-1"]), &["-1"]);
    assert_input_error(&gauntlet(&["run", "--norm", "l7"]), &["l7"]);
}

#[test]
fn devices_resolve_in_one_place() {
    let run = |device: &str| {
        gauntlet(&[
            "run",
            "--limit",
            "30",
            "--attack",
            "fgsm",
            "--eps",
            "0.1",
            "--no-checks",
            "--format",
            "json",
            "-q",
            "--device",
            device,
        ])
    };
    assert_input_error(&run("gpu"), &["`gpu` is not a device", "cuda:N"]);
    assert_input_error(&run("cuda:x"), &["`cuda:x` is not a device"]);
    let cpu = run("cpu");
    assert!(cpu.status.success(), "{}", stderr(&cpu));
    if cfg!(not(feature = "cuda")) {
        // Strict: no silent fallback when the user asked for the GPU.
        assert_input_error(&run("cuda"), &["no CUDA support", "scripts/build-cuda.sh", "--device cpu"]);
        assert_input_error(&run("cuda:1"), &["no CUDA support"]);
        // auto: the CPU, with a warning, and the CPU's numbers.
        let auto = run("auto");
        assert!(auto.status.success(), "{}", stderr(&auto));
        assert!(stderr(&auto).contains("warning: no CUDA device"), "{}", stderr(&auto));
        let (a, c): (serde_json::Value, serde_json::Value) =
            (serde_json::from_slice(&auto.stdout).unwrap(), serde_json::from_slice(&cpu.stdout).unwrap());
        for key in ["clean_accuracy", "results"] {
            let numbers = |v: &serde_json::Value| {
                let mut v = v[key].clone();
                for r in v.as_array_mut().into_iter().flatten() {
                    let r = r.as_object_mut().unwrap();
                    r.retain(|k, _| !(k.contains("time") || k.contains("per_second")));
                }
                v
            };
            assert_eq!(numbers(&a), numbers(&c), "{key}");
        }
        assert_eq!(a["run"]["device"], "cpu");
    }
}

#[test]
fn bad_models_are_refused_with_the_file_named() {
    let d = tmpdir("models");
    let pt = d.join("model.pt");
    std::fs::write(&pt, b"\x80\x02pickle").unwrap();
    assert_input_error(
        &gauntlet(&["run", "--model", pt.to_str().unwrap(), "--dataset", "datasets/data/mnist-test-1k"]),
        &["model.pt", "safetensors"],
    );

    let spec = d.join("m.toml");
    std::fs::write(&spec, "weights = \"m.safetensors\"\ninput = [1, 28, 28]\nclasses = 10\nlayers = [{ op = \"flatten\" }, { op = \"linear\", weight = \"fc\" }]\n").unwrap();
    std::fs::write(d.join("m.safetensors"), b"not safetensors at all").unwrap();
    assert_input_error(
        &gauntlet(&["run", "--model", spec.to_str().unwrap(), "--dataset", "datasets/data/mnist-test-1k"]),
        &["m.safetensors"],
    );

    std::fs::write(
        &spec,
        "weights = \"m.safetensors\"\ninput = [1, 28, 28]\nclasses = 10\nlayers = [{ op = \"convolution\" }]\n",
    )
    .unwrap();
    assert_input_error(
        &gauntlet(&["run", "--model", spec.to_str().unwrap(), "--dataset", "datasets/data/mnist-test-1k"]),
        &["m.toml", "convolution"],
    );
}

#[test]
fn wrong_data_shape_is_an_input_error_and_writes_nothing() {
    let d = tmpdir("shape");
    let out = d.join("r.json");
    let model = "tests/golden/allops.toml"; // expects 3×16×16
    let o = gauntlet(&[
        "run",
        "--model",
        model,
        "--dataset",
        "datasets/data/mnist-test-1k",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_input_error(&o, &["shape", "[3, 16, 16]"]);
    assert!(!out.exists(), "no output on error");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "no temporary files left");
}

#[test]
fn train_writes_a_model_that_runs() {
    let d = tmpdir("train");
    let out = d.join("tiny.toml");
    let arch = d.join("arch.toml");
    std::fs::write(&arch, "input = [1, 28, 28]\nclasses = 10\nlayers = [{ op = \"avgpool2d\", kernel = 4 }, { op = \"flatten\" }, { op = \"linear\", weight = \"fc\", out = 10 }]\n").unwrap();
    let o = gauntlet(&[
        "train",
        "--spec",
        arch.to_str().unwrap(),
        "--dataset",
        "datasets/data/mnist-test-1k",
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--lr",
        "0.01",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("tiny.safetensors").is_file());
    let o = gauntlet(&[
        "run",
        "--model",
        out.to_str().unwrap(),
        "--dataset",
        "datasets/data/mnist-test-1k",
        "--limit",
        "200",
        "--attack",
        "fgsm",
        "--eps",
        "0.1",
        "--format",
        "json",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // A linear model on 7×7 averages, trained on these very images, learns something.
    assert!(r["clean_accuracy"].as_f64().unwrap() > 0.6, "{}", r["clean_accuracy"]);
}

#[test]
fn strict_exits_3_on_a_flawed_evaluation_and_still_writes_the_report() {
    // A PGD with a step far too small is weaker than one FGSM step: the evaluation is flawed.
    let d = tmpdir("strict");
    let out = d.join("report.json");
    let args = ["run", "--limit", "60", "--attack", "fgsm", "--attack", "pgd:steps=2,step=0.001", "--eps", "0.2", "-q"];
    let mut strict = args.to_vec();
    strict.extend(["--strict", "--output", out.to_str().unwrap()]);
    let o = gauntlet(&strict);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("integrity check failed: iterative_vs_single_step"), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 8);
    let find = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap();
    assert_eq!(find("iterative_vs_single_step")["status"], "fail");
    assert_eq!(find("outputs_are_logits")["status"], "pass");
    assert!(find("iterative_vs_single_step")["detail"].as_str().unwrap().contains("56.67%"));
    // Without --strict the same run exits 0 and says so on stderr.
    let o = gauntlet(&args);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("integrity check failed"));
    // A sound evaluation passes every check under --strict.
    let o = gauntlet(&[
        "run", "--limit", "60", "--attack", "fgsm", "--attack", "pgd", "--eps", "0.1,0.2", "-q", "--strict",
        "--format", "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["checks"].as_array().unwrap().iter().all(|c| c["status"] == "pass"), "{}", r["checks"]);
}

#[test]
fn presets_and_target_modes_on_the_command_line() {
    assert_input_error(&gauntlet(&["run", "--preset", "quick", "--attack", "fgsm"]), &["--preset"]);
    assert_input_error(&gauntlet(&["run", "--preset", "best"]), &["best"]);
    assert_input_error(&gauntlet(&["run", "--target", "top-0"]), &["top-0"]);
    assert_input_error(&gauntlet(&["run", "--target", "likely"]), &["likely", "least-likely"]);
    assert_input_error(&gauntlet(&["run", "--target", "top-10", "--limit", "5"]), &["top-10", "9"]);
    let o = gauntlet(&[
        "run",
        "--preset",
        "quick",
        "--limit",
        "30",
        "--eps",
        "0.1",
        "-q",
        "--no-checks",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = r["results"].as_array().unwrap().iter().map(|x| x["attack"].as_str().unwrap()).collect();
    assert_eq!(names, ["fgsm", "pgd", "apgd"]);
    assert_eq!(r["protocol"], "independent");
    assert!(r["checks"].as_array().unwrap().is_empty());
    let o = gauntlet(&[
        "run",
        "--limit",
        "30",
        "--eps",
        "0.3",
        "--attack",
        "pgd:steps=10",
        "--target",
        "top-2",
        "-q",
        "--no-checks",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((r["goal"].as_str(), r["target_mode"].as_str()), (Some("targeted"), Some("top-2")));
}

/// `--preset standard`: AutoAttack's cascade apgd → apgd-t → fmn → square. Who broke each sample
/// first, per ε, recomputed two ways: from the cascade's cumulative robust counts (attack k's
/// first breaks = robust after attack k−1 minus robust after attack k) and from samples.jsonl (the
/// first attack, in order, whose record says broken).
#[test]
fn preset_standard_cascade_credits_each_break_to_the_first_attack() {
    let d = tmpdir("standard");
    let dir = d.join("out");
    let o = gauntlet(&[
        "run",
        "--preset",
        "standard",
        "--limit",
        "20",
        "--eps",
        "0.1,0.15",
        "-q",
        "--no-checks",
        "--report-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&dir.join("report.json"));
    let lines = jsonl(&dir.join("samples.jsonl"));
    let order = ["apgd", "apgd-t", "fmn", "square"];
    assert_eq!(r["protocol"], "cascade");
    let results = r["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|x| x["attack"].as_str().unwrap()).collect();
    assert_eq!(names, ["apgd", "apgd", "apgd-t", "apgd-t", "fmn", "fmn", "square", "square"]);
    let clean_correct = r["clean_correct"].as_u64().unwrap() as usize;
    assert_eq!(lines.len(), 20);
    assert_eq!(lines.iter().filter(|l| l["correct"] == true).count(), clean_correct);
    let eps = [0.1, 0.15];
    let mut credited = [0usize; 4];
    for (k, &e) in eps.iter().enumerate() {
        let robust_after = |a: usize| results[2 * a + k]["robust"].as_u64().unwrap() as usize;
        // From samples.jsonl: the first attack in the cascade order that broke the sample at ε.
        let mut first = [0usize; 4];
        for l in lines.iter().filter(|l| l["correct"] == true) {
            let broke = |name: &str| {
                l["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["attack"] == name && x["eps"] == e && x["broken"] == true)
            };
            if let Some(a) = order.iter().position(|n| broke(n)) {
                first[a] += 1;
            }
        }
        let wc = &r["worst_case"][k];
        assert_eq!(wc["eps"], e);
        let reported: Vec<usize> =
            wc["broken_first_by"].as_array().unwrap().iter().map(|f| f["broken"].as_u64().unwrap() as usize).collect();
        let by_name: Vec<&str> =
            wc["broken_first_by"].as_array().unwrap().iter().map(|f| f["attack"].as_str().unwrap()).collect();
        assert_eq!(by_name, order);
        assert_eq!(reported, first, "ε {e}: broken_first_by against samples.jsonl");
        for a in 0..4 {
            let before = if a == 0 { clean_correct } else { robust_after(a - 1) };
            assert_eq!(
                reported[a],
                before - robust_after(a),
                "ε {e}: {} first breaks against the robust counts",
                order[a]
            );
            credited[a] += reported[a];
        }
        assert_eq!(robust_after(3), wc["robust"].as_u64().unwrap() as usize);
        // Cascade: each budgeted attack is handed exactly the samples the earlier ones left robust
        // at this ε and it did not break at a smaller one; FMN (minimal norm) runs on every one.
        for a in [1usize, 3] {
            let handed = lines
                .iter()
                .filter(|l| l["correct"] == true)
                .filter(|l| {
                    l["results"].as_array().unwrap().iter().all(|x| {
                        let earlier = order[..a].contains(&x["attack"].as_str().unwrap()) && x["eps"] == e;
                        let own_smaller = x["attack"] == order[a] && x["eps"].as_f64().unwrap() < e;
                        !((earlier || own_smaller) && x["broken"] == true)
                    })
                })
                .count();
            assert_eq!(results[2 * a + k]["attacked"], handed, "ε {e}: samples handed to {}", order[a]);
        }
        assert_eq!(results[4 + k]["attacked"], clean_correct);
    }
    // Not vacuous: APGD breaks first at both budgets, APGD-T at least once, and FMN breaks samples
    // that the cascade credits to earlier attacks.
    assert!(credited[0] > 0 && credited[1] > 0, "{credited:?}");
    assert!(results[5]["broken"].as_u64().unwrap() as usize > credited[2], "{}", results[5]);
}

/// `--threads 1` and `--threads 2` give the same numbers and the same samples.jsonl, byte for byte.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let d = tmpdir("threads");
    let run = |threads: &str| {
        let dir = d.join(format!("t{threads}"));
        let o = gauntlet(&[
            "run",
            "--limit",
            "40",
            "--attack",
            "fgsm",
            "--attack",
            "pgd:steps=10",
            "--attack",
            "square:queries=100",
            "--eps",
            "0.1,0.2",
            "--threads",
            threads,
            "-q",
            "--no-checks",
            "--report-dir",
            dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (json(&dir.join("report.json")), std::fs::read_to_string(dir.join("samples.jsonl")).unwrap())
    };
    let ((a, sa), (b, sb)) = (run("1"), run("2"));
    assert_eq!((a["run"]["threads"].as_u64(), b["run"]["threads"].as_u64()), (Some(1), Some(2)));
    assert_eq!(sa, sb, "samples.jsonl differs between 1 and 2 threads");
    assert_eq!(sa.lines().count(), 40);
    for key in ["clean_accuracy", "clean_correct", "worst_case"] {
        assert!(!a[key].is_null(), "{key}");
        assert_eq!(a[key], b[key], "{key}");
    }
    let (ra, rb) = (a["results"].as_array().unwrap(), b["results"].as_array().unwrap());
    assert_eq!(ra.len(), 6);
    for (x, y) in ra.iter().zip(rb) {
        for key in
            ["attack", "eps", "robust", "broken", "attacked", "perturbation", "forward_passes", "gradient_passes"]
        {
            assert_eq!(x[key], y[key], "{} eps {}: {key}", x["attack"], x["eps"]);
        }
    }
    // Something was broken, so the comparison covers perturbations too.
    assert!(ra.iter().all(|x| x["broken"].as_u64().unwrap() > 0), "{ra:?}");
}
