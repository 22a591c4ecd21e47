//! The Kubernetes and Slurm recipes of docs/SCALE-OUT.md run as written: the commands in
//! `docs/k8s/*.yaml` and the scripts in `docs/slurm/` are executed here as separate processes (the
//! cluster paths replaced by local ones), and the merged report equals one run's. (The manifests
//! are validated against the Kubernetes schema by `scripts/validate-k8s.sh`, run by `.ci/run`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{json, stderr, tmpdir};
use serde_json::Value;

const MODEL: &str = "tests/golden/onnx/resnet_cifar.onnx";

/// A CIFAR-10 test batch of `n` records with patterned pixels.
fn cifar(dir: &Path, n: usize) -> PathBuf {
    let d = dir.join("cifar");
    std::fs::create_dir_all(&d).unwrap();
    let mut bytes = Vec::new();
    for r in 0..n {
        bytes.push((r % 10) as u8);
        bytes.extend((0..3072).map(|i| ((i * 7 + r * 13) % 256) as u8));
    }
    std::fs::write(d.join("test_batch.bin"), bytes).unwrap();
    d
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_gauntlet")).parent().unwrap().to_path_buf()
}

fn path_with_gauntlet() -> String {
    format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default())
}

fn numbers(dir: &Path) -> Value {
    common::report_numbers(dir)
}

/// The list items under the first `args:` after `after` in a manifest.
fn yaml_list(text: &str, after: &str) -> Vec<String> {
    let start = text.find(after).unwrap_or_else(|| panic!("`{after}` not in the manifest"));
    let rest = &text[start..];
    let args = rest.find("args:").expect("an args list");
    let mut items = Vec::new();
    let mut folded = false;
    for line in rest[args + 5..].lines().skip(1) {
        let t = line.trim();
        if let Some(item) = t.strip_prefix("- ") {
            if item == ">-" {
                folded = true;
                items.push(String::new());
            } else {
                items.push(item.split("  #").next().unwrap().trim().to_string());
            }
        } else if folded && !t.is_empty() && !t.contains(':') {
            let last = items.last_mut().unwrap();
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(t);
        } else {
            break;
        }
    }
    items
}

/// The text of the `gate.toml` ConfigMap entry.
fn configmap_gate(text: &str) -> String {
    let start = text.find("gate.toml: |").expect("the gate ConfigMap");
    text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_jobs_run_as_written() {
    let root = tmpdir("k8s-recipe");
    let data = cifar(&root, 24);
    let results = root.join("results");
    let config = root.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let model = Path::new(MODEL).canonicalize().unwrap();
    let local = |s: &str| {
        s.replace("/models/resnet18-cifar10.onnx", model.to_str().unwrap())
            .replace("/data/cifar-10-batches-bin", data.to_str().unwrap())
            .replace("/results", results.to_str().unwrap())
            .replace("/config", config.to_str().unwrap())
    };
    let eval = std::fs::read_to_string("docs/k8s/gauntlet-eval.yaml").unwrap();
    let args: Vec<String> = yaml_list(&eval, "name: gauntlet\n").iter().map(|a| local(a)).collect();
    assert!(args.contains(&"--shards=8".to_string()) && args.contains(&"--resume".to_string()), "{args:?}");
    let completions: usize =
        eval.lines().find_map(|l| l.trim().strip_prefix("completions: ")).unwrap().parse().unwrap();
    for index in 0..completions {
        let o = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
            .args(&args)
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("GAUNTLET_SHARDS")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "pod {index}: {}", stderr(&o));
    }
    let merge = std::fs::read_to_string("docs/k8s/gauntlet-merge.yaml").unwrap();
    std::fs::write(config.join("gate.toml"), configmap_gate(&merge)).unwrap();
    let script = local(&yaml_list(&merge, "name: merge\n")[0]);
    assert!(script.starts_with("exec gauntlet merge "), "{script}");
    let merged = Command::new("sh").arg("-c").arg(&script).env("PATH", path_with_gauntlet()).output().unwrap();
    // The same evaluation as one process, with the same gate.
    let single_dir = root.join("single");
    let mut single_args: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with("--shards") && !a.starts_with("--report-dir") && *a != "--resume")
        .cloned()
        .collect();
    single_args.extend(["--report-dir".into(), single_dir.display().to_string()]);
    single_args.extend(["--gate".into(), config.join("gate.toml").display().to_string()]);
    let single = Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(&single_args).output().unwrap();
    assert!(matches!(single.status.code(), Some(0 | 1)), "{}", stderr(&single));
    assert_eq!(merged.status.code(), single.status.code(), "merge: {}", stderr(&merged));
    assert_eq!(numbers(&results.join("run-1/merged")), numbers(&single_dir));
    assert_eq!(json(&results.join("run-1/merged/report.json"))["gate"], json(&single_dir.join("report.json"))["gate"]);
}

#[test]
fn the_slurm_scripts_run_as_written() {
    let root = tmpdir("slurm-recipe");
    let data = cifar(&root, 20);
    let results = root.join("run");
    let gate = common::write(
        &root,
        "gate.toml",
        "[[rule]]\nmetric = \"robust_accuracy\"\nattack = \"worst\"\neps = 0.03137254901960784\nmin = 0.0\n",
    );
    let env = |c: &mut Command| {
        c.env("GAUNTLET", env!("CARGO_BIN_EXE_gauntlet"))
            .env("MODEL", Path::new(MODEL).canonicalize().unwrap())
            .env("DATA", &data)
            .env("RESULTS", &results)
            .env("GATE", &gate)
            .env("SHARDS", "3")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("GAUNTLET_SHARDS");
    };
    for task in 0..3 {
        let mut c = Command::new("bash");
        c.arg("docs/slurm/gauntlet-array.sh").env("SLURM_ARRAY_TASK_ID", task.to_string());
        c.env("SLURM_CPUS_PER_TASK", (1 + task % 2).to_string());
        env(&mut c);
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "task {task}: {}", stderr(&o));
    }
    let mut c = Command::new("bash");
    c.arg("docs/slurm/gauntlet-merge.sh");
    env(&mut c);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "merge: {}", stderr(&o));
    assert!(stderr(&o).contains("gate passed"), "{}", stderr(&o));
    let single = root.join("single");
    let o = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--model"])
        .arg(Path::new(MODEL).canonicalize().unwrap())
        .arg("--dataset")
        .arg(&data)
        .args(["--preset", "standard", "--norm", "linf", "--eps", "8/255", "--batch-size", "128", "--quiet"])
        .args(["--gate", &gate, "--report-dir"])
        .arg(&single)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(numbers(&results.join("merged")), numbers(&single));
}
