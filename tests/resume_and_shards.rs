//! Killed, interrupted, resumed, sharded, rebatched and rethreaded runs give the numbers and the
//! per-sample results of one clean run. Every run here is a separate `gauntlet` process.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{json, stderr, tmpdir};
use serde_json::Value;

/// The evaluation every test runs: random starts (PGD), early exit, two budgets, the checks.
const EVAL: &[&str] =
    &["--limit", "240", "--attack", "fgsm", "--attack", "pgd:steps=20", "--eps", "0.1,0.2", "--quiet"];

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    c.env_remove("JOB_COMPLETION_INDEX").env_remove("SLURM_ARRAY_TASK_ID").env_remove("GAUNTLET_SHARDS");
    c
}

fn run(extra: &[&str], dir: &Path) -> std::process::Output {
    let o = bin().arg("run").args(EVAL).args(extra).arg("--report-dir").arg(dir).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "run {extra:?}: {}", stderr(&o));
    o
}

fn spawn(extra: &[&str], dir: &Path) -> Child {
    bin()
        .arg("run")
        .args(EVAL)
        .args(extra)
        .arg("--report-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Checkpointed batches so far.
fn parts(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("checkpoint"))
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("part-")).count())
        .unwrap_or(0)
}

/// Waits until `dir` holds at least `n` finished batches; false if the run ended first.
fn wait_for_parts(child: &mut Child, dir: &Path, n: usize) -> bool {
    let start = Instant::now();
    while parts(dir) < n {
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(120) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn numbers(dir: &Path) -> Value {
    common::report_numbers(dir)
}

fn samples(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("samples.jsonl")).unwrap()
}

fn assert_same_run(reference: &Path, other: &Path, what: &str) {
    assert_eq!(numbers(reference), numbers(other), "{what}: report numbers differ");
    assert!(samples(reference) == samples(other), "{what}: samples.jsonl differs");
}

/// The uninterrupted run other runs are compared with (batches of 16: 15 batches).
fn reference(root: &Path) -> PathBuf {
    reference_with(root, "16")
}

/// The uninterrupted run with another batch size (which the integrity checks depend on).
fn reference_with(root: &Path, batch: &str) -> PathBuf {
    let dir = root.join("reference");
    run(&["--batch-size", batch], &dir);
    assert!(!dir.join("checkpoint").exists(), "a finished run removes its checkpoint");
    dir
}

#[test]
fn killed_runs_resume_to_the_same_report() {
    let root = tmpdir("resume-kill");
    let reference = reference(&root);
    for (trial, after) in [1usize, 6, 14].into_iter().enumerate() {
        let dir = root.join(format!("killed-{trial}"));
        let mut child = spawn(&["--batch-size", "16"], &dir);
        let killed_mid_run = wait_for_parts(&mut child, &dir, after);
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        assert!(killed_mid_run, "the run ended before batch {after} was written");
        assert!(!dir.join("report.json").exists(), "a killed run leaves no report");
        // Without --resume the checkpoint is not thrown away.
        let o = bin().arg("run").args(EVAL).args(["--batch-size", "16", "--report-dir"]).arg(&dir).output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
        run(&["--batch-size", "16", "--resume"], &dir);
        assert_same_run(&reference, &dir, &format!("killed after {after} batches, resumed"));
        assert!(!dir.join("checkpoint").exists());
    }
}

#[test]
fn ctrl_c_stops_after_a_batch_and_says_how_to_resume() {
    let root = tmpdir("resume-sigint");
    let reference = reference(&root);
    let dir = root.join("interrupted");
    let mut child = spawn(&["--batch-size", "16"], &dir);
    assert!(wait_for_parts(&mut child, &dir, 2));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted:") && err.contains("resume with:") && err.contains("--resume"), "{err}");
    assert!(!dir.join("report.json").exists());
    let kept = parts(&dir);
    assert!((2..15).contains(&kept), "{kept} batches kept");
    run(&["--batch-size", "16", "--resume"], &dir);
    assert_same_run(&reference, &dir, "interrupted with SIGINT, resumed");
}

#[test]
fn resume_refuses_a_checkpoint_of_another_run() {
    let dir = tmpdir("resume-other");
    let mut child = spawn(&["--batch-size", "16"], &dir);
    assert!(wait_for_parts(&mut child, &dir, 1));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = bin()
        .arg("run")
        .args(["--limit", "240", "--attack", "fgsm", "--attack", "pgd:steps=20", "--eps", "0.1,0.3", "--quiet"])
        .args(["--batch-size", "16", "--resume", "--report-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    common::assert_input_error(&o, &["checkpoint", "eps is [0.1,0.3] now but [0.1,0.2] in the checkpoint"]);
    let o =
        bin().arg("run").args(EVAL).args(["--batch-size", "8", "--resume", "--report-dir"]).arg(&dir).output().unwrap();
    common::assert_input_error(&o, &["batch_size is 8 now but 16"]);
    // A damaged batch file is named, not trusted.
    std::fs::write(dir.join("checkpoint/part-000000.json"), "{\"first\": 0, \"labels\": [").unwrap();
    let o = bin()
        .arg("run")
        .args(EVAL)
        .args(["--batch-size", "16", "--resume", "--report-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    common::assert_input_error(&o, &["part-000000.json", "damaged checkpoint"]);
}

#[test]
fn shards_from_schedulers_merge_into_one_run() {
    let root = tmpdir("shards");
    // Batches of 24: the shards' slices (80 samples) do not start on a batch boundary of the
    // reference run, so a result that depended on the batching would show.
    let reference = reference_with(&root, "24");
    // Each shard in its own process, its index from a scheduler's variable, with other thread
    // counts and batches that do not line up with the reference's.
    for (i, (var, threads)) in
        [("JOB_COMPLETION_INDEX", "1"), ("SLURM_ARRAY_TASK_ID", "2"), ("JOB_COMPLETION_INDEX", "3")]
            .into_iter()
            .enumerate()
    {
        let o = bin()
            .env(var, i.to_string())
            .env("GAUNTLET_SHARDS", "3")
            .arg("run")
            .args(EVAL)
            .args(["--batch-size", "24", "--threads", threads, "--report-dir"])
            .arg(root.join("shard-{shard}"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "shard {i}: {}", stderr(&o));
        let r = json(&root.join(format!("shard-{i}/report.json")));
        assert_eq!(r["samples"], 80, "shard {i} evaluates its third");
        assert!(r["checks"].as_array().unwrap().is_empty(), "shards leave the checks to the merge");
    }
    let merged = root.join("merged");
    let shard = |i: usize| root.join(format!("shard-{i}"));
    let o = bin()
        .arg("merge")
        .args([shard(2), shard(0), shard(1)])
        .arg("--report-dir")
        .arg(&merged)
        .arg("--quiet")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_same_run(&reference, &merged, "three shards merged");
    assert!(!json(&merged.join("report.json"))["checks"].as_array().unwrap().is_empty());

    // The gate judges the merged report as it judges one run.
    let gate = common::write(
        &root,
        "gate.toml",
        "[[rule]]\nmetric = \"robust_accuracy\"\nattack = \"pgd\"\neps = 0.2\nmin = 0.5\n",
    );
    let single =
        bin().arg("run").args(EVAL).args(["--batch-size", "16", "--gate", &gate, "--format", "json"]).output().unwrap();
    let gated = root.join("gated");
    let merged_gate = bin()
        .arg("merge")
        .args([shard(0), shard(1), shard(2)])
        .args(["--gate", &gate, "--quiet", "--format", "json", "--report-dir"])
        .arg(&gated)
        .output()
        .unwrap();
    assert_eq!(single.status.code(), merged_gate.status.code());
    let verdict = |o: &std::process::Output| serde_json::from_slice::<Value>(&o.stdout).unwrap()["gate"].clone();
    assert_eq!(verdict(&single), verdict(&merged_gate));
    assert!(verdict(&single).is_object());

    // Refusals, each naming what is wrong.
    let o = bin().arg("merge").args([shard(0), shard(2)]).arg("--report-dir").arg(root.join("m1")).output().unwrap();
    common::assert_input_error(&o, &["shard 1/3 missing"]);
    let o = bin()
        .arg("merge")
        .args([shard(0), shard(1), shard(1), shard(2)])
        .arg("--report-dir")
        .arg(root.join("m2"))
        .output()
        .unwrap();
    common::assert_input_error(&o, &["both shard 1/3"]);
    let other = root.join("other-1");
    let o = bin()
        .arg("run")
        .args(["--limit", "240", "--attack", "fgsm", "--attack", "pgd:steps=20", "--eps", "0.1,0.3", "--quiet"])
        .args(["--batch-size", "24", "--shard", "1/3", "--report-dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = bin()
        .arg("merge")
        .args([shard(0), other.clone(), shard(2)])
        .arg("--report-dir")
        .arg(root.join("m3"))
        .output()
        .unwrap();
    common::assert_input_error(&o, &["belongs to another run", "eps"]);
    let o = bin().arg("merge").arg(&reference).arg("--report-dir").arg(root.join("m4")).output().unwrap();
    common::assert_input_error(&o, &["not a shard"]);
    for d in ["m1", "m2", "m3", "m4"] {
        assert!(!root.join(d).exists(), "a refused merge writes nothing");
    }
}

#[test]
fn the_index_from_the_environment_needs_a_shard_placeholder() {
    let dir = tmpdir("shard-placeholder");
    let o = bin()
        .env("JOB_COMPLETION_INDEX", "0")
        .arg("run")
        .args(EVAL)
        .args(["--shards", "2", "--report-dir"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    common::assert_input_error(&o, &["JOB_COMPLETION_INDEX", "{shard}"]);
    let o = bin().arg("run").args(EVAL).args(["--shards", "2", "--report-dir"]).arg(dir.join("out")).output().unwrap();
    common::assert_input_error(&o, &["--shards 2", "JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID"]);
    let o = bin().arg("run").args(EVAL).args(["--shard", "2/2", "--report-dir"]).arg(dir.join("out")).output().unwrap();
    common::assert_input_error(&o, &["--shard 2/2"]);
}

#[test]
fn per_sample_results_do_not_depend_on_batch_size_or_threads() {
    let root = tmpdir("batches-threads");
    let runs = [("7", "1"), ("16", "2"), ("64", "3"), ("240", "2")];
    let dirs: Vec<PathBuf> = runs
        .iter()
        .map(|(batch, threads)| {
            let d = root.join(format!("b{batch}-t{threads}"));
            run(&["--batch-size", batch, "--threads", threads, "--no-checks"], &d);
            d
        })
        .collect();
    for d in &dirs[1..] {
        assert!(samples(&dirs[0]) == samples(d), "{} differs from {}", d.display(), dirs[0].display());
        assert_eq!(numbers(&dirs[0]), numbers(d));
    }
}
