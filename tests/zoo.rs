//! The shipped model pairs hold their numbers: clean and PGD-40 accuracy on the 1,000 shipped test
//! images of their dataset against PyTorch + torchattacks on the same weights
//! (`tests/golden/zoo/make_zoo_golden.py`), and the robust models are robust where the standard
//! ones are not.

use std::path::Path;

use candle_core::Device;
use common::report;
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
