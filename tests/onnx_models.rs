//! The ONNX executor on models exported by PyTorch (tests/golden/onnx, made by
//! make_onnx_golden.py): logits and input gradients against PyTorch and onnxruntime, the
//! shipped MNIST CNN as ONNX against the native implementation, and the load-time diagnostics.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gauntlet::models::onnx::OnnxModel;
use gauntlet::models::preprocess::{Layout, Preprocess};
use gauntlet::models::{load_classifier, Classifier, Goal, LoadOptions, Loss, ModelError};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::NpzReader;

mod common;

const DIR: &str = "tests/golden/onnx";

struct Golden {
    arrays: std::collections::HashMap<String, Tensor>,
}

impl Golden {
    fn read(name: &str) -> Golden {
        let file = std::fs::File::open(format!("{DIR}/{name}_io.npz")).unwrap();
        let mut npz = NpzReader::new(file).unwrap();
        let mut arrays = std::collections::HashMap::new();
        for key in npz.names().unwrap() {
            let key = key.trim_end_matches(".npy").to_string();
            let t = if key == "labels" {
                let a: ArrayD<i64> = npz.by_name(&key).unwrap();
                let shape = a.shape().to_vec();
                Tensor::from_vec(a.iter().copied().collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
            } else {
                let a: ArrayD<f32> = npz.by_name(&key).unwrap();
                let shape = a.shape().to_vec();
                Tensor::from_vec(a.iter().copied().collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
            };
            arrays.insert(key, t);
        }
        Golden { arrays }
    }

    fn get(&self, key: &str) -> &Tensor {
        self.arrays.get(key).unwrap_or_else(|| panic!("golden file lacks `{key}`"))
    }

    fn goal(&self) -> Goal {
        Goal::untargeted(self.get("labels").to_vec1::<i64>().unwrap().iter().map(|&v| v as u32).collect())
    }
}

fn max_rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len(), "sizes differ");
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max) / scale
}

fn load(name: &str, opts: &LoadOptions) -> Result<OnnxModel, ModelError> {
    OnnxModel::load(Path::new(&format!("{DIR}/{name}.onnx")), &Device::Cpu, opts)
}

/// Logits against PyTorch and onnxruntime, CE and margin input gradients against PyTorch.
fn check_architecture(name: &str) {
    let model = load(name, &LoadOptions::default()).unwrap();
    // These numbers come from the compiled plan; the node-by-node executor is checked against
    // it in compiled_plan.rs.
    if let Err(why) = model.executor() {
        panic!("{name} is not compiled: {why}");
    }
    let g = Golden::read(name);
    let x = g.get("x");
    let logits = model.logits(x).unwrap();
    let e_torch = max_rel_err(&logits, g.get("logits"));
    let e_ort = max_rel_err(&logits, g.get("ort_logits"));
    assert!(e_torch < 1e-4 && e_ort < 1e-4, "{name}: logits differ (torch {e_torch:e}, onnxruntime {e_ort:e})");
    for (loss, key) in [(Loss::CrossEntropy, "grad"), (Loss::Margin, "grad_margin")] {
        let lg = model.loss_and_grad(x, &g.goal(), loss).unwrap();
        let err = max_rel_err(&lg.grad, g.get(key));
        assert!(err < 2e-3, "{name}: {key} differs from PyTorch: max relative error {err:e}");
    }
    assert!(model.gradient_issue().is_none());
}

#[test]
fn resnet_style_cifar_network_matches_pytorch() {
    check_architecture("resnet_cifar");
}

#[test]
fn mobilenet_block_matches_pytorch() {
    check_architecture("mobilenet_block");
}

#[test]
fn vision_transformer_block_matches_pytorch() {
    check_architecture("vit_block");
}

#[test]
fn shipped_cnn_as_onnx_equals_the_native_model() {
    let onnx = load("mnist_cnn", &LoadOptions::default()).unwrap();
    let native = gauntlet::models::zoo::mnist_cnn(&Device::Cpu).unwrap();
    let data = gauntlet::datasets::samples::mnist_test_1k().unwrap();
    let n = 64;
    let x = Tensor::from_vec(data.images[..n * 784].to_vec(), (n, 1, 28, 28), &Device::Cpu).unwrap();
    let goal = Goal::untargeted(data.labels[..n].to_vec());
    let a = onnx.loss_and_grad(&x, &goal, Loss::CrossEntropy).unwrap();
    let b = native.loss_and_grad(&x, &goal, Loss::CrossEntropy).unwrap();
    assert!(max_rel_err(&a.logits, &b.logits) < 1e-5, "logits differ");
    assert!(max_rel_err(&a.grad, &b.grad) < 1e-4, "input gradients differ");
    assert_eq!(onnx.num_classes(), 10);
    assert_eq!(onnx.input_shape(), [1, 28, 28]);
    assert_eq!(onnx.parameter_count(), native.parameter_count());
}

#[test]
fn final_softmax_is_detected_and_its_logits_attacked() {
    let g = Golden::read("softmax_head");
    let model = load("softmax_head", &LoadOptions::default()).unwrap();
    assert!(model.notes().iter().any(|n| n.contains("Softmax") && n.contains("--keep-softmax")));
    assert!(max_rel_err(&model.logits(g.get("x")).unwrap(), g.get("logits")) < 1e-4);
    let lg = model.loss_and_grad(g.get("x"), &g.goal(), Loss::CrossEntropy).unwrap();
    assert!(max_rel_err(&lg.grad, g.get("grad")) < 2e-3);
    let kept = load("softmax_head", &LoadOptions { keep_softmax: true, ..Default::default() }).unwrap();
    assert!(max_rel_err(&kept.logits(g.get("x")).unwrap(), g.get("probs")) < 1e-4);
    assert!(kept.notes().iter().any(|n| n.contains("overstates robustness")));
}

#[test]
fn discrete_operators_on_the_gradient_path_are_named() {
    let g = Golden::read("argmax_inside");
    let model = load("argmax_inside", &LoadOptions::default()).unwrap();
    assert!(max_rel_err(&model.logits(g.get("x")).unwrap(), g.get("logits")) < 1e-4);
    let issue = model.gradient_issue().expect("the gradient is masked");
    assert!(issue.contains("Floor") && issue.contains("ArgMax"), "{issue}");
}

#[test]
fn every_unsupported_operator_is_listed_at_once() {
    let err = load("unsupported_ops", &LoadOptions::default()).err().expect("must fail").to_string();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/unsupported_ops.json")).unwrap()).unwrap();
    for op in ["GridSample", "CumSum", "Det"] {
        assert!(err.contains(op), "{op} missing from: {err}");
    }
    let nodes = expected["unsupported_nodes"].as_array().expect("the golden file lists `unsupported_nodes`");
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for node in nodes {
        let name = node["name"].as_str().unwrap();
        assert!(!name.is_empty());
        assert!(err.contains(name), "node {name} missing from: {err}");
        let op = node["op_type"].as_str().unwrap();
        assert!(err.contains(op), "operator {op} missing from: {err}");
    }
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(err.contains("unsupported_ops.onnx"), "names the file: {err}");
}

#[test]
fn nhwc_models_take_pixel_space_nchw_through_the_layout_option() {
    let g = Golden::read("nhwc_input");
    let opts =
        LoadOptions { preprocess: Preprocess { layout: Layout::Nhwc, ..Default::default() }, ..Default::default() };
    let model = load_classifier(Path::new(&format!("{DIR}/nhwc_input.onnx")), DType::F32, &Device::Cpu, &opts).unwrap();
    assert_eq!(model.input_shape(), [1, 28, 28]);
    let x_nchw = g.get("x").permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
    assert!(max_rel_err(&model.logits(&x_nchw).unwrap(), g.get("logits")) < 1e-4);
    let lg = model.loss_and_grad(&x_nchw, &g.goal(), Loss::CrossEntropy).unwrap();
    let grad_nhwc = lg.grad.permute((0, 2, 3, 1)).unwrap();
    assert!(max_rel_err(&grad_nhwc, g.get("grad")) < 2e-3);
}

#[test]
fn open_input_sizes_need_input_shape() {
    let err = load("dynamic_hw", &LoadOptions::default()).err().expect("must fail").to_string();
    assert!(err.contains("--input-shape"), "{err}");
    let g = Golden::read("dynamic_hw");
    let model = load("dynamic_hw", &LoadOptions { input_shape: Some([3, 40, 40]), ..Default::default() }).unwrap();
    assert!(max_rel_err(&model.logits(g.get("x")).unwrap(), g.get("logits")) < 1e-4);
    let lg = model.loss_and_grad(g.get("x"), &g.goal(), Loss::CrossEntropy).unwrap();
    assert!(max_rel_err(&lg.grad, g.get("grad")) < 2e-3);
}

#[test]
fn a_fixed_export_batch_size_still_runs_any_batch() {
    let g = Golden::read("fixed_batch1");
    let model = load("fixed_batch1", &LoadOptions::default()).unwrap();
    assert_eq!(g.get("x").dims()[0], 5);
    assert!(max_rel_err(&model.logits(g.get("x")).unwrap(), g.get("logits")) < 1e-4);
    let lg = model.loss_and_grad(g.get("x"), &g.goal(), Loss::CrossEntropy).unwrap();
    assert!(max_rel_err(&lg.grad, g.get("grad")) < 2e-3);
}

#[test]
fn corrupt_files_are_refused_with_the_file_named() {
    let dir = common::tmpdir("onnx-corrupt");
    let bytes = std::fs::read(format!("{DIR}/mnist_cnn.onnx")).unwrap();
    let cut = dir.join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let err = OnnxModel::load(&cut, &Device::Cpu, &LoadOptions::default()).err().expect("must fail").to_string();
    assert!(err.contains("cut.onnx") && !err.contains('\n'), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = IxDyn(&[1]);
}

/// An L∞ evaluation of `model` on the first `n` shipped images.
fn evaluate_linf(model: &dyn Classifier, n: usize, attacks: &[&str], eps: &[f64]) -> gauntlet::eval::Evaluation {
    use gauntlet::eval::{evaluate, Silent};
    evaluate(model, &common::data(n), &common::config(attacks, eps, 7, 500), &Silent).unwrap()
}

/// The shipped CNN exported by `torch.onnx.export`, attacked by Gauntlet through the ONNX
/// executor, against torchattacks on the same weights and images: clean accuracy to 0.1 point and
/// FGSM to 1 point on all 1,000 images.
#[test]
fn fgsm_on_onnx_agrees_with_torchattacks() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/mnist_cnn_torchattacks.json")).unwrap()).unwrap();
    let model = load("mnist_cnn", &LoadOptions::default()).unwrap();
    let n = golden["samples"].as_u64().unwrap() as usize;
    assert_eq!(n, 1000);
    let eps = [0.05, 0.1, 0.2, 0.3];
    let r = common::report(&evaluate_linf(&model, n, &["fgsm"], &eps));
    let clean = golden["clean_accuracy"].as_f64().unwrap();
    assert!((r.clean_accuracy - clean).abs() <= 0.001, "clean {} vs torch {clean}", r.clean_accuracy);
    for (k, e) in eps.iter().enumerate() {
        let fgsm = golden["fgsm"][format!("{e}")].as_f64().unwrap();
        let ours = r.results[k].robust_accuracy;
        assert_eq!(r.results[k].eps, *e);
        assert!((ours - fgsm).abs() <= 0.01, "FGSM eps {e}: ours {ours}, torchattacks {fgsm}");
    }
}

/// PGD (40 steps, the torchattacks settings) through the ONNX executor reaches the native model's
/// verdict on every one of 100 images: the same samples broken at the same ε, with the same
/// prediction and perturbation. The native model's PGD is held against torchattacks on all 1,000
/// images in tests/evaluation.rs.
#[test]
fn pgd_on_onnx_equals_the_native_model_per_sample() {
    let onnx = load("mnist_cnn", &LoadOptions::default()).unwrap();
    let native = gauntlet::models::zoo::mnist_cnn(&Device::Cpu).unwrap();
    let eps = [0.05, 0.1, 0.2];
    let attacks = ["pgd:steps=40,step=0.01"];
    let (a, b) = (evaluate_linf(&onnx, 100, &attacks, &eps), evaluate_linf(&native, 100, &attacks, &eps));
    assert_eq!(a.clean_pred, b.clean_pred);
    let (x, y) = (&a.attacks[0].broken, &b.attacks[0].broken);
    let mut broken = [0usize; 3];
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        match (x, y) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                assert_eq!((x.eps_index, x.adv_pred), (y.eps_index, y.adv_pred), "sample {i}");
                assert!(
                    (x.linf - y.linf).abs() <= 1e-4 && (x.l2 - y.l2).abs() <= 1e-3 * y.l2,
                    "sample {i}: {x:?} {y:?}"
                );
                broken[x.eps_index] += 1;
            }
            _ => panic!("sample {i}: ONNX {x:?}, native {y:?}"),
        }
    }
    // Not a vacuous agreement: samples break at every budget.
    assert!(broken.iter().all(|&c| c > 0), "first broken per ε: {broken:?}");
}

/// Runs the binary: exit code, stdout, stderr.
fn gauntlet(args: &[&str]) -> (i32, String, String) {
    let out = common::gauntlet(args);
    (out.status.code().unwrap_or(-1), common::stdout(&out), common::stderr(&out))
}

#[test]
fn inspect_describes_the_model_and_its_gradient() {
    let (code, out, _) = gauntlet(&["inspect", "tests/golden/onnx/resnet_cifar.onnx"]);
    assert_eq!(code, 0);
    for want in ["opset ai.onnx 17", "input", "(3, 32, 32)", "10 classes", "BatchNormalization", "gradient   available"]
    {
        assert!(out.contains(want), "`{want}` missing from:\n{out}");
    }
    let params: usize =
        out.lines().find_map(|l| l.strip_prefix("parameters ")).unwrap().split(' ').next().unwrap().parse().unwrap();
    let model = load("resnet_cifar", &LoadOptions::default()).unwrap();
    assert_eq!(params, model.parameter_count());
    // On a GPU the ResNet stays on the device; the TorchScript ViT reads shapes back per call.
    assert!(out.contains("cuda       every operator on the device, no host reads"), "{out}");
    let (code, out, _) = gauntlet(&["inspect", "tests/golden/onnx/vit_block.onnx"]);
    assert_eq!(code, 0);
    let cuda = out.lines().find(|l| l.starts_with("cuda ")).unwrap_or_default();
    assert!(cuda.contains("Reshape ×10 (parameters)") && cuda.contains("Cast ×4 (host)"), "{out}");

    let (code, out, _) = gauntlet(&["inspect", "tests/golden/onnx/argmax_inside.onnx"]);
    assert_eq!(code, 0);
    assert!(out.contains("gradient   MASKED") && out.contains("Floor"), "{out}");

    let (code, out, _) = gauntlet(&["inspect", "tests/golden/onnx/unsupported_ops.onnx"]);
    assert_eq!(code, 0);
    assert!(out.contains("UNSUPPORTED") && out.contains("GridSample") && out.contains("Det"), "{out}");
}

#[test]
fn run_refuses_what_it_cannot_measure_with_exit_2() {
    let data = "datasets/data/mnist-test-1k";
    let (code, _, err) =
        gauntlet(&["run", "--model", "tests/golden/onnx/unsupported_ops.onnx", "--dataset", data, "--limit", "4"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("GridSample") && err.contains("CumSum") && err.contains("Det"), "{err}");

    let (code, _, err) =
        gauntlet(&["run", "--model", "tests/golden/onnx/argmax_inside.onnx", "--dataset", data, "--limit", "4"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Floor") && err.contains("--attack square"), "{err}");

    let (code, out, err) = gauntlet(&[
        "run",
        "--model",
        "tests/golden/onnx/argmax_inside.onnx",
        "--dataset",
        data,
        "--limit",
        "8",
        "--attack",
        "square:queries=20",
        "--eps",
        "0.1",
        "--no-checks",
        "--quiet",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"robust_accuracy\""), "{out}");
}

#[test]
fn run_on_onnx_gives_the_native_models_report() {
    let data = "datasets/data/mnist-test-1k";
    let common = [
        "--dataset",
        data,
        "--limit",
        "50",
        "--attack",
        "fgsm",
        "--eps",
        "0.1,0.2",
        "--no-checks",
        "--quiet",
        "--format",
        "json",
    ];
    let (code, onnx, err) = gauntlet(&[&["run", "--model", "tests/golden/onnx/mnist_cnn.onnx"][..], &common].concat());
    assert_eq!(code, 0, "{err}");
    let (code, native, err) = gauntlet(&[&["run", "--model", "models/zoo/mnist-cnn.toml"][..], &common].concat());
    assert_eq!(code, 0, "{err}");
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&onnx).unwrap(), serde_json::from_str(&native).unwrap());
    assert_eq!(a["clean_accuracy"], b["clean_accuracy"]);
    let robust = |v: &serde_json::Value| {
        v["results"].as_array().unwrap().iter().map(|r| r["robust_accuracy"].clone()).collect::<Vec<_>>()
    };
    assert_eq!(robust(&a), robust(&b));
}
