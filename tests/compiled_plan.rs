//! The compiled executor (models/src/engine) against the node-by-node executor it replaces, on
//! the ONNX files exported by PyTorch (tests/golden/onnx): logits and the input gradients of
//! every loss, at several batch sizes and in an order that reuses the plan's buffers across
//! sizes. (Both are checked against PyTorch's own numbers in onnx_models.rs.)

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gauntlet::models::onnx::OnnxModel;
use gauntlet::models::{Classifier, Goal, LoadOptions, Loss};

const DIR: &str = "tests/golden/onnx";

fn load(name: &str, node_by_node: bool, input_shape: Option<[usize; 3]>) -> OnnxModel {
    let opts = LoadOptions { node_by_node, input_shape, ..Default::default() };
    OnnxModel::load(Path::new(&format!("{DIR}/{name}.onnx")), &Device::Cpu, &opts).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// max |a − b| / max |b|
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max) / scale
}

/// Images in [0, 1]: a brightness per sample plus pseudo-random pixels (no exact ties between
/// neighbouring pixels, so that max pooling and ReLU choose alike in both executors).
fn images(n: usize, shape: [usize; 3], seed: usize) -> Tensor {
    let len = shape.iter().product::<usize>();
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed as u64;
    let v: Vec<f32> = (0..n * len)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (state >> 40) as f32 / (1u64 << 24) as f32;
            let level = 0.3 + 0.4 * ((i / len + seed) % 5) as f32 / 4.0;
            (level + 0.3 * (r - 0.5)).clamp(0.0, 1.0)
        })
        .collect();
    Tensor::from_vec(v, (n, shape[0], shape[1], shape[2]), &Device::Cpu).unwrap()
}

fn compare(name: &str, input_shape: Option<[usize; 3]>) {
    let compiled = load(name, false, input_shape);
    let reference = load(name, true, input_shape);
    if let Err(why) = compiled.executor() {
        panic!("{name} is not compiled: {why}");
    }
    assert!(reference.executor().is_err());
    let shape = compiled.input_shape();
    let k = compiled.num_classes() as u32;
    // Largest batch first, then smaller ones and the largest again: buffers are reused.
    for (round, n) in [7usize, 1, 3, 7].into_iter().enumerate() {
        let x = images(n, shape, round);
        let (a, b) = (compiled.logits(&x).unwrap(), reference.logits(&x).unwrap());
        let e = rel(&a, &b);
        assert!(e < 1e-5, "{name}, batch {n}: logits differ by {e:e} (relative)");
        let labels: Vec<u32> = (0..n as u32).map(|i| (i * 3 + round as u32) % k).collect();
        let mut losses = vec![
            (Loss::CrossEntropy, Goal::untargeted(labels.clone())),
            (Loss::Margin, Goal::untargeted(labels.clone())),
        ];
        losses.push((Loss::CrossEntropy, Goal::targeted(labels.iter().map(|l| (l + 1) % k).collect())));
        if k >= 4 {
            // DLR is constant (gradient zero up to rounding) where the label ranks third: use the
            // predictions, as for the correctly classified samples an attack starts from.
            let predicted = gauntlet::models::predictions(&b).unwrap();
            losses.push((Loss::Dlr, Goal::untargeted(predicted)));
        }
        for (loss, goal) in losses {
            let (a, b) =
                (compiled.loss_and_grad(&x, &goal, loss).unwrap(), reference.loss_and_grad(&x, &goal, loss).unwrap());
            let (el, eg) = (rel(&a.loss, &b.loss), rel(&a.grad, &b.grad));
            assert!(el < 1e-4, "{name}, batch {n}, {loss:?}: losses differ by {el:e}");
            assert!(
                eg < 1e-4,
                "{name}, batch {n}, {loss:?}: input gradients differ by {eg:e} (relative to the largest)"
            );
            assert_eq!(a.grad.dims(), x.dims());
            assert!(rel(&a.logits, &b.logits) < 1e-5);
        }
    }
}

#[test]
fn resnet_with_batch_norm_and_residual_adds() {
    compare("resnet_cifar", None);
}

#[test]
fn mobilenet_with_depthwise_convolutions_and_squeeze_excite() {
    compare("mobilenet_block", None);
}

#[test]
fn vision_transformer_with_attention_and_layer_norm() {
    compare("vit_block", None);
}

#[test]
fn mnist_cnn_with_normalization_inside() {
    compare("mnist_cnn", None);
}

#[test]
fn fully_convolutional_network_at_another_input_size() {
    compare("dynamic_hw", Some([3, 40, 40]));
}

#[test]
fn a_graph_with_an_operator_the_kernels_lack_runs_node_by_node() {
    // Floor has no compiled kernel (its gradient is zero): the model still loads, runs node by
    // node and the reason names the node.
    let model = load("argmax_inside", false, None);
    let why = model.executor().expect_err("not compiled");
    assert!(why.contains("Floor has no compiled kernel"), "{why}");
    assert!(model.gradient_issue().is_some());
}

#[test]
fn a_graph_exported_for_batch_one_that_takes_any_batch() {
    compare("fixed_batch1", None);
}

#[test]
fn a_spec_model_runs_on_the_plan_of_its_onnx_form() {
    // The shipped spec model compiles through its ONNX form; written to a file and loaded as an
    // ONNX model, that form gives bit-identical logits and gradients, and both agree with the
    // spec model's layers (candle operations, autograd).
    use gauntlet::models::{autograd_loss_and_grad, load_model};
    use prost::Message;
    let spec = load_model(Path::new("models/zoo/mnist-cnn.toml"), DType::F32, &Device::Cpu).unwrap();
    assert!(spec.executor().is_ok(), "the spec model is not compiled");
    let dir = std::env::temp_dir().join(format!("gauntlet-spec-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mnist-cnn.onnx");
    std::fs::write(&file, spec.to_onnx().unwrap().encode_to_vec()).unwrap();
    let onnx = OnnxModel::load(&file, &Device::Cpu, &LoadOptions::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(onnx.executor().is_ok());
    let x = images(5, [1, 28, 28], 3);
    let goal = Goal::untargeted(vec![0, 3, 5, 7, 9]);
    let (a, b) = (
        spec.loss_and_grad(&x, &goal, Loss::CrossEntropy).unwrap(),
        onnx.loss_and_grad(&x, &goal, Loss::CrossEntropy).unwrap(),
    );
    assert_eq!(values(&a.logits), values(&b.logits));
    assert_eq!(values(&a.grad), values(&b.grad));
    let layers = autograd_loss_and_grad(&spec, &x, &goal, Loss::CrossEntropy).unwrap();
    assert!(rel(&a.logits, &layers.logits) < 1e-5);
    assert!(rel(&a.grad, &layers.grad) < 1e-4);
}
