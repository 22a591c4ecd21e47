//! A sample's logits and input gradient have the same bits whatever batch it is evaluated in:
//! its position, the batch's size and the other samples in it. This is what makes results
//! independent of `--batch-size`, of resuming and of sharding (`tests/resume_and_shards.rs`):
//! matrix kernels choose their blocking from the matrix sizes, so products whose rows are
//! samples are computed in fixed blocks of rows.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gauntlet::models::{load_classifier, zoo, Classifier, Goal, LoadOptions, Loss};

/// Deterministic pseudo-random pixels in [0, 1].
fn pixels(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn rows(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Compares every (start, len) slice of a 40-sample batch, evaluated alone, with the same
/// samples inside the whole batch.
fn assert_invariant(name: &str, model: &dyn Classifier) {
    let [c, h, w] = model.input_shape();
    let n = 40;
    let x = Tensor::from_vec(pixels(n * c * h * w, 7), (n, c, h, w), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % model.num_classes() as u32).collect();
    let whole = model.loss_and_grad(&x, &Goal::untargeted(labels.clone()), Loss::CrossEntropy).unwrap();
    for (start, len) in [(0, 1), (0, 7), (3, 7), (9, 1), (13, 17), (16, 24), (21, 19)] {
        let part = x.narrow(0, start, len).unwrap();
        let goal = Goal::untargeted(labels[start..start + len].to_vec());
        let got = model.loss_and_grad(&part, &goal, Loss::CrossEntropy).unwrap();
        let logits = model.logits(&part).unwrap();
        let want_logits = rows(&whole.logits.narrow(0, start, len).unwrap());
        assert_eq!(rows(&got.logits), want_logits, "{name}: logits of samples {start}..{} differ", start + len);
        assert_eq!(
            rows(&logits),
            want_logits,
            "{name}: forward-only logits of samples {start}..{} differ",
            start + len
        );
        let want_grad = rows(&whole.grad.narrow(0, start, len).unwrap());
        assert_eq!(rows(&got.grad), want_grad, "{name}: gradients of samples {start}..{} differ", start + len);
    }
}

#[test]
fn the_shipped_model_is_batch_invariant() {
    assert_invariant("builtin:mnist-cnn", &zoo::mnist_cnn(&Device::Cpu).unwrap());
}

#[test]
fn onnx_models_are_batch_invariant() {
    for file in [
        "mnist_cnn.onnx",
        "resnet_cifar.onnx",
        "mobilenet_block.onnx",
        "nhwc_input.onnx",
        "dynamic_hw.onnx",
        "vit_block.onnx",
    ] {
        let path = Path::new("tests/golden/onnx").join(file);
        let opts =
            LoadOptions { input_shape: (file == "dynamic_hw.onnx").then_some([3, 20, 20]), ..Default::default() };
        let model = load_classifier(&path, DType::F32, &Device::Cpu, &opts).unwrap();
        assert_invariant(file, model.as_ref());
    }
}
