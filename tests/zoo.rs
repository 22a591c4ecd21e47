//! The shipped model pairs hold their numbers: clean and PGD-40 accuracy on the 1,000 shipped test
//! images of their dataset against PyTorch + torchattacks on the same weights
//! (`tests/golden/zoo/make_zoo_golden.py`), the robust models are robust where the standard
//! ones are not, and their robustness holds under Gauntlet's AutoAttack-style cascade.

use std::path::Path;

use candle_core::Device;
use common::report;
use gauntlet::checks::rules::GRADIENT_FREE_FAIL;
use gauntlet::datasets;
use gauntlet::eval::{evaluate, Silent};
use gauntlet::models::zoo;

mod common;

/// Clean and PGD-40 robust accuracy of a shipped model in Gauntlet, with the golden entry.
fn measure(name: &str) -> (f64, f64, serde_json::Value) {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tests/golden/zoo/zoo_torchattacks.json").unwrap()).unwrap();
    let g = golden["models"][name].clone();
    let data_dir = if name.starts_with("fashion") { "fashion-mnist-test-1k" } else { "mnist-test-1k" };
    let data = datasets::open(&Path::new("datasets/data").join(data_dir)).unwrap();
    assert_eq!(data.labels.len() as u64, g["samples"].as_u64().unwrap());
    let entry = zoo::find(Path::new(&format!("builtin:{name}"))).unwrap();
    let model = entry.load(&Device::Cpu).unwrap();
    let (eps, alpha) = (g["eps"].as_f64().unwrap(), g["alpha"].as_f64().unwrap());
    let pgd = format!("pgd:steps=40,step={alpha}");
    let ev = evaluate(&model, &data, &common::config(&[&pgd], &[eps], 0, 500), &Silent).unwrap();
    let r = report(&ev);
    (r.clean_accuracy, r.results[0].robust_accuracy, g)
}

fn check_pair(dataset: &str, robust_floor: f64) {
    let (clean_s, pgd_s, g_s) = measure(&format!("{dataset}-standard"));
    let (clean_r, pgd_r, g_r) = measure(&format!("{dataset}-robust"));
    for (name, clean, pgd, g) in [("standard", clean_s, pgd_s, &g_s), ("robust", clean_r, pgd_r, &g_r)] {
        let (t_clean, t_pgd) = (g["clean"].as_f64().unwrap(), g["pgd40"].as_f64().unwrap());
        assert!((clean - t_clean).abs() <= 0.001, "{dataset}-{name}: clean {clean} vs torch {t_clean}");
        // Within 2 points of torchattacks, and never more than 1 point weaker.
        assert!((pgd - t_pgd).abs() <= 0.02, "{dataset}-{name}: PGD-40 {pgd} vs torchattacks {t_pgd}");
        assert!(pgd <= t_pgd + 0.01, "{dataset}-{name}: PGD-40 {pgd} is weaker than torchattacks {t_pgd}");
    }
    // AutoAttack (torchattacks, on the first images) finds the robust model no more than a few
    // points weaker than PGD-40 does: its robustness is not an artefact of a masked gradient.
    let (aa_r, pgd_t_r) = (g_r["autoattack_first"].as_f64().unwrap(), g_r["pgd40_first"].as_f64().unwrap());
    assert!(pgd_t_r - aa_r <= 0.05, "{dataset}-robust: AutoAttack {aa_r} far below PGD-40 {pgd_t_r}");
    assert!(pgd_r >= robust_floor, "{dataset}-robust: PGD-40 accuracy {pgd_r} below {robust_floor}");
    assert!(
        pgd_s <= pgd_r - 0.3,
        "{dataset}: the standard model ({pgd_s}) is not far weaker than the robust one ({pgd_r})"
    );
}

#[test]
fn the_mnist_pair_holds_its_numbers() {
    check_pair("mnist", 0.88);
}

#[test]
fn the_fashion_mnist_pair_holds_its_numbers() {
    check_pair("fashion-mnist", 0.6);
}

/// Gauntlet's `--preset standard` (APGD-CE, APGD-T, FMN, then Square on what they left) on the
/// first images AutoAttack saw: the worst-case robust accuracy, the same images' accuracy under a
/// strong PGD (100 steps of ε/10, 5 restarts), and the fraction of the clean-correct samples that
/// only the gradient-free Square broke.
fn standard_preset(name: &str, eps: f64, n: usize) -> (f64, f64, f64) {
    let dir = common::tmpdir(&format!("zoo-standard-{name}"));
    let data = if name.starts_with("fashion") { "datasets/data/fashion-mnist-test-1k" } else { common::MNIST };
    let pgd = format!("pgd:steps=100,step={},restarts=5", eps / 10.0);
    let (model, eps, limit) = (format!("builtin:{name}"), eps.to_string(), n.to_string());
    let run = |extra: &[&str], out: &str| {
        let out = dir.join(out);
        let mut args = vec!["run", "--model", &model, "--dataset", data, "--eps", &eps, "--limit", &limit];
        args.extend_from_slice(&["--no-checks", "--quiet", "--report-dir", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let o = common::gauntlet(&args);
        assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
        common::json(&out.join("report.json"))
    };
    let r = run(&["--preset", "standard"], "standard");
    let worst = &r["worst_case"][0];
    let firsts = worst["broken_first_by"].as_array().unwrap();
    let by_square = firsts.iter().find(|b| b["attack"] == "square").unwrap()["broken"].as_f64().unwrap();
    let p = run(&["--attack", &pgd], "pgd");
    let free_only = by_square / r["clean_correct"].as_f64().unwrap();
    (worst["robust_accuracy"].as_f64().unwrap(), p["results"][0]["robust_accuracy"].as_f64().unwrap(), free_only)
}

/// The robust models' robustness is not an artefact of masked gradients: the AutoAttack-style
/// cascade finds them at most a few points weaker than a strong PGD and no weaker than
/// torchattacks' AutoAttack does on the same images (+1 point), and the gradient-free Square breaks
/// no more than the `gradient_free_vs_gradient` check's FAIL threshold of what the gradient
/// attacks left. (PGD-40 with the MNIST challenge's step of 0.01 cannot move a pixel across the
/// whole ε-ball from its random start, 40 × 0.01 < 2 × 0.3, and leaves a few points more.)
fn check_no_masking(name: &str) {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tests/golden/zoo/zoo_torchattacks.json").unwrap()).unwrap();
    let g = &golden["models"][name];
    let n = golden["autoattack_samples"].as_u64().unwrap() as usize;
    let (standard, pgd, free_only) = standard_preset(name, g["eps"].as_f64().unwrap(), n);
    let aa = g["autoattack_first"].as_f64().unwrap();
    eprintln!("{name}: --preset standard {standard}, PGD-100x5 {pgd}, Square only {free_only}, AutoAttack {aa}");
    assert!(standard <= aa + 0.01, "{name}: --preset standard leaves {standard}, torchattacks' AutoAttack {aa}");
    assert!(pgd - standard <= MASKING_GAP, "{name}: --preset standard {standard} far below PGD {pgd}");
    assert!(free_only <= GRADIENT_FREE_FAIL, "{name}: Square alone broke {free_only} of the clean-correct samples");
}

/// How far below the strong PGD the standard preset may put a robust model (fraction of the samples).
const MASKING_GAP: f64 = 0.03;

#[test]
fn the_robust_mnist_model_does_not_mask_its_gradients() {
    check_no_masking("mnist-robust");
}

#[test]
fn the_robust_fashion_mnist_model_does_not_mask_its_gradients() {
    check_no_masking("fashion-mnist-robust");
}
