//! Square against torchattacks on the shipped MNIST model.

use candle_core::Device;
use common::data;
use gauntlet::attacks::{Norm, Registry};
use gauntlet::eval::{evaluate, EvalConfig, Silent};
use gauntlet::models::zoo;

mod common;

#[test]
fn square_is_at_least_as_strong_as_torchattacks() {
    // A weaker attack overstates robustness: on the same weights and images, with the same number
    // of queries, Square's robust accuracy may exceed the mean of torchattacks' runs (8 seeds) by at
    // most 1 percentage point at each budget.
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tests/golden/mnist_torchattacks_square.json").unwrap()).unwrap();
    let n = golden["samples"].as_u64().unwrap() as usize;
    let queries = golden["params"]["n_queries"].as_u64().unwrap();
    let d = data(n);
    let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
    for (norm, key) in [(Norm::Linf, "linf"), (Norm::L2, "l2")] {
        let reference = golden[key].as_object().unwrap();
        let mut eps: Vec<(f64, f64)> =
            reference.iter().map(|(e, v)| (e.parse().unwrap(), v["mean"].as_f64().unwrap())).collect();
        eps.sort_by(|a, b| a.0.total_cmp(&b.0));
        let cfg = EvalConfig {
            attacks: vec![Registry::default().create(&format!("square:queries={queries}")).unwrap()],
            norm,
            eps: eps.iter().map(|e| e.0).collect(),
            seed: 7,
            batch_size: 500,
            targets: None,
            cascade: false,
        };
        let ev = evaluate(&model, &d, &cfg, &Silent).unwrap();
        let clean = (0..n).filter(|&i| ev.correct(i)).count() as f64 / n as f64;
        let golden_clean = golden["clean_accuracy"].as_f64().unwrap();
        assert!((clean - golden_clean).abs() <= 0.001, "clean {clean} vs torch {golden_clean}");
        for (k, &(e, torch)) in eps.iter().enumerate() {
            let ours = (0..n).filter(|&i| ev.robust(0, i, k)).count() as f64 / n as f64;
            eprintln!("square {norm} eps {e}: ours {ours:.4}, torchattacks {torch:.4} (mean of seeds)");
            assert!(ours <= torch + 0.01 + 1e-9, "square {norm} eps {e}: ours {ours}, torchattacks {torch}");
        }
    }
}
