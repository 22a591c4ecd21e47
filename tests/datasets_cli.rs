//! The binary on every dataset format: the same images as an image folder, a CSV and the shipped
//! IDX data give the same numbers; dataset and preprocessing flags are validated up front.

use std::path::{Path, PathBuf};

use common::{gauntlet, stderr, tmpdir};
use gauntlet::datasets::samples;
use serde_json::Value;

mod common;

const N: usize = 80;

/// Runs FGSM at two budgets on the first N images of `dataset` (`None`: the shipped IDX data) and
/// returns the JSON report.
fn run(dataset: Option<&Path>, extra: &[&str]) -> Value {
    let limit = N.to_string();
    let mut args = vec!["run", "--limit", &limit, "--attack", "fgsm", "--eps", "0.1,0.2", "--no-checks", "--quiet"];
    args.extend(["--format", "json"]);
    if let Some(d) = dataset {
        args.extend(["--dataset", d.to_str().unwrap()]);
    }
    args.extend(extra);
    let o = gauntlet(&args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The first N shipped MNIST test images as 28×28 gray PNGs, `root/<digit>/<index>.png`, and a
/// CSV listing them in the original order.
fn write_mnist_images(root: &Path) -> PathBuf {
    let set = samples::mnist_test_1k().unwrap();
    let mut csv = String::from("path,label\n");
    for i in 0..N {
        let bytes: Vec<u8> = set.image(i).iter().map(|&v| (v * 255.0).round() as u8).collect();
        let rel = format!("{}/{i:03}.png", set.labels[i]);
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_raw(28, 28, bytes).unwrap().save(&path).unwrap();
        csv += &format!("{rel},{}\n", set.labels[i]);
    }
    let mut digits: Vec<u32> = set.labels[..N].to_vec();
    digits.sort_unstable();
    digits.dedup();
    assert_eq!(digits.len(), 10, "every class must be present so that folder indices equal the digits");
    let path = root.join("list.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn counts(r: &Value) -> Vec<u64> {
    let mut v = vec![r["clean_correct"].as_u64().unwrap()];
    v.extend(r["worst_case"].as_array().unwrap().iter().map(|w| w["robust"].as_u64().unwrap()));
    v
}

#[test]
fn image_folder_and_csv_match_the_idx_data() {
    let d = tmpdir("folder");
    let root = d.join("mnist-png");
    let csv = write_mnist_images(&root);
    let idx = run(None, &[]);
    let folder = run(Some(&root), &[]);
    let listed = run(Some(&csv), &[]);
    assert_eq!(idx["samples"], N);
    assert_eq!(folder["samples"], N);
    let clean = |r: &Value| r["clean_accuracy"].as_f64().expect("clean_accuracy is a number");
    assert_eq!(clean(&folder), clean(&idx));
    assert_eq!(clean(&listed), clean(&idx));
    // FGSM is deterministic and per sample: the robust counts agree too.
    assert_eq!(counts(&folder), counts(&idx));
    assert_eq!(counts(&listed), counts(&idx));
    assert!(counts(&idx)[0] >= 75, "{:?}", counts(&idx));
    assert_eq!(counts(&idx).len(), 3, "clean and one worst case per ε: {:?}", counts(&idx));
    // Provenance lists every image read (and the CSV itself).
    let files = |r: &Value| r["provenance"]["dataset_files"].as_array().unwrap().len();
    assert_eq!(files(&folder), N);
    assert_eq!(files(&listed), N + 1);
    assert_eq!(folder["model"]["preprocessing"], "none");
    assert!(folder["provenance"]["config"].get("preprocessing").is_none());
    // `verify` re-hashes the same files.
    let report = d.join("report.json");
    std::fs::write(&report, folder.to_string()).unwrap();
    let o = gauntlet(&["verify", report.to_str().unwrap(), "--dataset", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // An identity resize/crop is recorded in the configuration but changes no number.
    let resized = run(Some(&root), &["--resize", "28", "--center-crop", "28,28"]);
    assert_eq!(counts(&resized), counts(&idx));
    assert_eq!(resized["provenance"]["config"]["data_options"], "resize 28 (shorter side), center-crop 28x28");
}

#[test]
fn preprocessing_is_reported_and_eps_stays_in_pixel_space() {
    let r = run(None, &["--mean", "0.5", "--std", "0.5"]);
    assert_eq!(r["model"]["preprocessing"], "mean [0.5], std [0.5]");
    assert_eq!(r["provenance"]["config"]["preprocessing"], "mean [0.5], std [0.5]");
    assert_eq!(r["eps"], serde_json::json!([0.1, 0.2]));
    let notes = r["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("preprocessing (mean [0.5], std [0.5])")), "{notes:?}");
    // The shipped model normalizes nothing itself: this preprocessing changes its inputs, so its
    // clean accuracy drops.
    let plain = run(None, &[]);
    let correct = |r: &Value| r["clean_correct"].as_u64().expect("clean_correct is a count");
    assert!(correct(&r) < correct(&plain), "{} vs {}", correct(&r), correct(&plain));
}

/// Asserts exit code 2 and a one-line error containing every needle for a run with `args`.
fn assert_input_error(args: &[&str], needles: &[&str]) {
    let mut all = vec!["run", "--limit", "5", "--attack", "fgsm", "--no-checks", "--quiet"];
    all.extend(args);
    common::assert_input_error(&gauntlet(&all), needles);
}

#[test]
fn bad_flags_are_one_line_usage_errors() {
    // The shipped model has one channel.
    assert_input_error(&["--mean", "0.1,0.2"], &["--mean has 2 values", "1 channels"]);
    assert_input_error(&["--mean", "0.1,x"], &["--mean", "`x` is not a number"]);
    assert_input_error(&["--std", "0"], &["--std", "positive"]);
    assert_input_error(&["--mean", "0.1,0.2,0.3", "--std", "0.1,0.2"], &["--mean has 3 values and --std 2"]);
    assert_input_error(&["--channel-order", "grb"], &["--channel-order grb"]);
    assert_input_error(&["--layout", "hwc"], &["--layout hwc"]);
    assert_input_error(&["--data-layout", "chw"], &["--data-layout chw"]);
    assert_input_error(&["--resize", "0"], &["--resize 0"]);
    assert_input_error(&["--center-crop", "2,3,4"], &["--center-crop 2,3,4"]);
    // A crop that leaves the wrong size for the model is caught before the evaluation.
    assert_input_error(&["--center-crop", "20"], &["shape", "[1, 20, 20]", "[1, 28, 28]"]);
}

#[test]
fn truncated_cifar_batch_is_a_one_line_error() {
    let d = tmpdir("cifar");
    let p = d.join("test_batch.bin");
    std::fs::write(&p, vec![0u8; 3073 + 10]).unwrap();
    let model = "builtin:mnist-cnn";
    assert_input_error(
        &["--model", model, "--dataset", p.to_str().unwrap()],
        &["test_batch.bin", "truncated", "3083 bytes"],
    );
}
