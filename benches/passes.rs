//! Forward, forward + input gradient, and one PGD step, on (a) the advertorch-style MNIST LeNet
//! (conv32-pool-conv64-pool-fc200-fc10) at batch 1, 32 and 256 and (b) a CIFAR-shaped
//! ResNet-18-style network at batch 64, both with random weights.
//!
//! `cargo bench --bench passes`. Throughput is given in FLOPs: criterion's "elem/s" is FLOP/s.
//! A forward pass counts 2·MACs of its convolutions and linear layers; an input-gradient pass and a
//! PGD step count twice that (the input gradient of a convolution or linear layer costs as many
//! MACs as its forward pass; no weight gradient is computed).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gauntlet::attacks::{AttackBatch, Norm, Registry, ThreatModel};
use gauntlet::models::{predictions, Bounds, Classifier, Goal, Layer, LayerSpec, Loss, ModelSpec, Result};

fn conv(weight: &str, out: usize, stride: usize) -> LayerSpec {
    LayerSpec::Conv2d {
        weight: weight.into(),
        stride,
        padding: 1,
        dilation: 1,
        groups: 1,
        out: Some(out),
        kernel: Some(3),
    }
}

fn lenet() -> (gauntlet::models::Sequential, f64) {
    let pool = || LayerSpec::Maxpool2d { kernel: 2, stride: None, padding: 0 };
    let spec = ModelSpec {
        weights: None,
        input: [1, 28, 28],
        classes: 10,
        mean: None,
        std: None,
        bounds: None,
        layers: vec![
            conv("conv1", 32, 1),
            LayerSpec::Relu,
            pool(),
            conv("conv2", 64, 1),
            LayerSpec::Relu,
            pool(),
            LayerSpec::Flatten,
            LayerSpec::Linear { weight: "linear1".into(), out: Some(200) },
            LayerSpec::Relu,
            LayerSpec::Linear { weight: "linear2".into(), out: Some(10) },
        ],
    };
    let w = spec.init_weights(0).unwrap();
    let model = spec.build(&w, Path::new("lenet"), DType::F32, &Device::Cpu).unwrap();
    let flops = 2.0 * (28.0 * 28.0 * 32.0 * 9.0 + 14.0 * 14.0 * 64.0 * 32.0 * 9.0 + 3136.0 * 200.0 + 200.0 * 10.0);
    (model, flops)
}

/// A ResNet-18-style CIFAR network: conv64, four stages of two basic blocks (64, 128, 256, 512
/// channels), global average pooling, linear; batch norm folded to an affine map, as at inference.
struct ResNet {
    stem: Vec<Layer>,
    blocks: Vec<(Vec<Layer>, Vec<Layer>)>,
    head: Layer,
    flops: f64,
}

fn random(shape: &[usize], scale: f64) -> Tensor {
    (Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap() * scale).unwrap()
}

fn conv_layer(cin: usize, cout: usize, k: usize, stride: usize) -> Layer {
    let w = random(&[cout, cin, k, k], (2.0 / (cin * k * k) as f64).sqrt());
    Layer::Conv2d { weight: w, bias: None, stride, padding: k / 2, dilation: 1, groups: 1 }
}

fn bn(c: usize) -> Layer {
    Layer::BatchNorm2d { scale: (random(&[1, c, 1, 1], 0.1) + 1.0).unwrap(), shift: random(&[1, c, 1, 1], 0.1) }
}

impl ResNet {
    fn new() -> ResNet {
        let mut flops = 2.0 * 32.0 * 32.0 * 64.0 * 27.0;
        let mut blocks = Vec::new();
        let (mut cin, mut size) = (64usize, 32usize);
        for (stage, cout) in [64usize, 128, 256, 512].into_iter().enumerate() {
            for b in 0..2 {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let out_size = size / stride;
                let main = vec![
                    conv_layer(cin, cout, 3, stride),
                    bn(cout),
                    Layer::Relu,
                    conv_layer(cout, cout, 3, 1),
                    bn(cout),
                ];
                flops += 2.0 * (out_size * out_size) as f64 * 9.0 * (cin * cout + cout * cout) as f64;
                let short = if stride != 1 || cin != cout {
                    flops += 2.0 * (out_size * out_size * cin * cout) as f64;
                    vec![conv_layer(cin, cout, 1, stride), bn(cout)]
                } else {
                    vec![]
                };
                blocks.push((main, short));
                (cin, size) = (cout, out_size);
            }
        }
        flops += 2.0 * 512.0 * 10.0;
        let head = Layer::Linear { weight: random(&[10, 512], 0.05), bias: Some(random(&[10], 0.01)) };
        ResNet { stem: vec![conv_layer(3, 64, 3, 1), bn(64), Layer::Relu], blocks, head, flops }
    }
}

fn apply(layers: &[Layer], x: &Tensor) -> candle_core::Result<Tensor> {
    layers.iter().try_fold(x.clone(), |h, l| l.forward(&h))
}

impl Classifier for ResNet {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = apply(&self.stem, x)?;
        for (main, short) in &self.blocks {
            let r = if short.is_empty() { h.clone() } else { apply(short, &h)? };
            h = Layer::Relu.forward(&(apply(main, &h)? + r)?)?;
        }
        let pooled = h.mean(3)?.mean(2)?;
        Ok(self.head.forward(&pooled)?)
    }
    fn input_shape(&self) -> [usize; 3] {
        [3, 32, 32]
    }
    fn num_classes(&self) -> usize {
        10
    }
    fn bounds(&self) -> Bounds {
        Bounds::default()
    }
    fn device(&self) -> &Device {
        &Device::Cpu
    }
}

fn bench_model(c: &mut Criterion, name: &str, model: &dyn Classifier, flops: f64, batches: &[usize]) {
    let pgd1 = Registry::default().create("pgd:steps=1,random_start=false").unwrap();
    let threat = ThreatModel::new(Norm::Linf, 8.0 / 255.0, Bounds::default()).unwrap();
    let [ch, h, w] = model.input_shape();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for &batch in batches {
        let x = Tensor::rand(0f32, 1f32, (batch, ch, h, w), &Device::Cpu).unwrap();
        // Labels equal to the current predictions, so that PGD does not stop before its step.
        let goal = Goal::untargeted(predictions(&model.logits(&x).unwrap()).unwrap());
        let ids: Vec<u64> = (0..batch as u64).collect();
        let fwd = flops * batch as f64;
        group.throughput(Throughput::Elements(fwd as u64));
        group.bench_with_input(BenchmarkId::new("forward", batch), &x, |b, x| b.iter(|| model.logits(x).unwrap()));
        group.throughput(Throughput::Elements(2 * fwd as u64));
        group.bench_with_input(BenchmarkId::new("forward+grad", batch), &x, |b, x| {
            b.iter(|| model.loss_and_grad(x, &goal, Loss::CrossEntropy).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("pgd-step", batch), &x, |b, x| {
            let batch = AttackBatch { x0: x, goal: &goal, ids: &ids, seed: 0, stream: 0 };
            b.iter(|| pgd1.run(model, &batch, &threat).unwrap())
        });
    }
    group.finish();
}

fn passes(c: &mut Criterion) {
    let (model, flops) = lenet();
    bench_model(c, "lenet", &model, flops, &[1, 32, 256]);
    let resnet = ResNet::new();
    let flops = resnet.flops;
    bench_model(c, "resnet18", &resnet, flops, &[64]);
}

criterion_group!(benches, passes);
criterion_main!(benches);
