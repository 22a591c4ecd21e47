//! Input gradients: against PyTorch golden files and against f64 central finite differences.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gauntlet::attacks::{Attack, AttackBatch, Fgsm, Norm, Params, ThreatModel};
use gauntlet::models::{load_model, objective, Bounds, Classifier, Goal, LayerSpec, Loss, ModelSpec};

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load("tests/golden/allops_io.safetensors", &Device::Cpu).unwrap()
}

fn max_rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max) / scale
}

fn labels(g: &HashMap<String, Tensor>) -> Vec<u32> {
    g["labels"].to_vec1::<i64>().unwrap().iter().map(|&v| v as u32).collect()
}

#[test]
fn logits_and_input_gradients_match_pytorch() {
    let model = load_model(Path::new("tests/golden/allops.toml"), DType::F64, &Device::Cpu).unwrap();
    let g = golden();
    let goal = Goal::untargeted(labels(&g));
    let logits = model.logits(&g["input"]).unwrap();
    assert!(max_rel_err(&logits, &g["logits"]) < 1e-10, "logits differ from PyTorch");
    for (loss, key) in [(Loss::CrossEntropy, "grad_ce"), (Loss::Margin, "grad_margin")] {
        let lg = model.loss_and_grad(&g["input"], &goal, loss).unwrap();
        let err = max_rel_err(&lg.grad, &g[key]);
        assert!(err < 1e-9, "{key}: max relative error {err:e} against PyTorch");
    }
}

#[test]
fn f32_model_agrees_with_pytorch_to_single_precision() {
    let model = load_model(Path::new("tests/golden/allops.toml"), DType::F32, &Device::Cpu).unwrap();
    let g = golden();
    let x = g["input"].to_dtype(DType::F32).unwrap();
    let lg = model.loss_and_grad(&x, &Goal::untargeted(labels(&g)), Loss::CrossEntropy).unwrap();
    assert!(max_rel_err(&lg.logits, &g["logits"]) < 1e-4);
    assert!(max_rel_err(&lg.grad, &g["grad_ce"]) < 1e-3);
}

#[test]
fn fgsm_matches_torchattacks() {
    let model = load_model(Path::new("tests/golden/allops.toml"), DType::F64, &Device::Cpu).unwrap();
    let g = golden();
    let goal = Goal::untargeted(labels(&g));
    let fgsm = Fgsm::from_params(Params::parse("fgsm", "").unwrap()).unwrap();
    let threat = ThreatModel::new(Norm::Linf, 0.03, Bounds::default()).unwrap();
    let ids: Vec<u64> = (0..6).collect();
    let batch = AttackBatch { x0: &g["input"], goal: &goal, ids: &ids, seed: 0, stream: 0 };
    let out = fgsm.run(&model, &batch, &threat).unwrap();
    let err = max_rel_err(&out.x_adv, &g["fgsm_eps_0.03"]);
    assert!(err < 1e-12, "FGSM differs from torchattacks by {err:e}");
}

/// Central finite differences of the summed per-sample objective, in f64 through the layers,
/// against the input gradients of the f64 model (layer by layer, hand-written backward) and of
/// the f32 model (the compiled plan of its ONNX form).
fn check_fd(spec: &ModelSpec, weights: &HashMap<String, Tensor>, what: &str) {
    let model = spec.build(weights, Path::new(what), DType::F64, &Device::Cpu).unwrap();
    let compiled = spec.build(weights, Path::new(what), DType::F32, &Device::Cpu).unwrap();
    if let Err(why) = compiled.executor() {
        panic!("{what}: the f32 model is not compiled: {why}");
    }
    let [c, h, w] = spec.input;
    let n = 2;
    let mut state = 12345u64;
    let mut rnd = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let x: Vec<f64> = (0..n * c * h * w).map(|_| 0.05 + 0.9 * rnd()).collect();
    let x = Tensor::from_vec(x, (n, c, h, w), &Device::Cpu).unwrap();
    let as_vec = |t: Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    for loss in [Loss::CrossEntropy, Loss::Margin] {
        let goal = Goal::untargeted(vec![0, 2]);
        let grad = as_vec(model.loss_and_grad(&x, &goal, loss).unwrap().grad);
        let x32 = x.to_dtype(DType::F32).unwrap();
        let grad32 = as_vec(compiled.loss_and_grad(&x32, &goal, loss).unwrap().grad);
        let base = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let f = |v: &[f64]| -> f64 {
            let t = Tensor::from_slice(v, (n, c, h, w), &Device::Cpu).unwrap();
            objective(&model.logits(&t).unwrap(), &goal, loss).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let hstep = 1e-6;
        let (mut worst, mut worst32) = (0f64, 0f64);
        let scale = grad.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{what}: gradient is identically zero");
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] += hstep;
            let mut m = base.clone();
            m[i] -= hstep;
            let fd = (f(&p) - f(&m)) / (2.0 * hstep);
            worst = worst.max((fd - grad[i]).abs());
            worst32 = worst32.max((fd - grad32[i]).abs());
        }
        assert!(worst / scale < 1e-6, "{what} ({loss:?}): finite differences differ by {:e} (relative)", worst / scale);
        assert!(
            worst32 / scale < 1e-4,
            "{what} ({loss:?}), compiled f32: finite differences differ by {:e} (relative)",
            worst32 / scale
        );
    }
}

fn layer_spec(input: [usize; 3], layers: Vec<LayerSpec>) -> ModelSpec {
    ModelSpec { weights: None, input, classes: 3, mean: None, std: None, bounds: None, layers }
}

fn head(mut layers: Vec<LayerSpec>) -> Vec<LayerSpec> {
    layers.push(LayerSpec::Flatten);
    layers.push(LayerSpec::Linear { weight: "head".into(), out: Some(3) });
    layers
}

fn conv(out: usize, kernel: usize, stride: usize, padding: usize, dilation: usize, groups: usize) -> LayerSpec {
    LayerSpec::Conv2d { weight: "c".into(), stride, padding, dilation, groups, out: Some(out), kernel: Some(kernel) }
}

#[test]
fn every_layer_type_matches_finite_differences() {
    let input = [2, 6, 6];
    let cases: Vec<(&str, Vec<LayerSpec>)> = vec![
        ("conv2d", vec![conv(3, 3, 1, 1, 1, 1)]),
        ("conv2d stride 2", vec![conv(4, 3, 2, 0, 1, 1)]),
        ("conv2d dilation 2", vec![conv(2, 2, 1, 1, 2, 1)]),
        ("conv2d groups", vec![conv(4, 3, 1, 1, 1, 2)]),
        ("linear", vec![]),
        ("relu", vec![conv(3, 3, 1, 1, 1, 1), LayerSpec::Relu]),
        ("leaky_relu", vec![conv(3, 3, 1, 1, 1, 1), LayerSpec::LeakyRelu { slope: 0.2 }]),
        ("tanh", vec![LayerSpec::Tanh]),
        ("sigmoid", vec![LayerSpec::Sigmoid]),
        ("maxpool2d 2", vec![LayerSpec::Maxpool2d { kernel: 2, stride: None, padding: 0 }]),
        ("maxpool2d 3/2 pad 1", vec![LayerSpec::Maxpool2d { kernel: 3, stride: Some(2), padding: 1 }]),
        ("maxpool2d 2/1", vec![LayerSpec::Maxpool2d { kernel: 2, stride: Some(1), padding: 0 }]),
        ("avgpool2d 2", vec![LayerSpec::Avgpool2d { kernel: 2, stride: None, padding: 0 }]),
        ("avgpool2d 3/2 pad 1", vec![LayerSpec::Avgpool2d { kernel: 3, stride: Some(2), padding: 1 }]),
        ("dropout", vec![LayerSpec::Dropout { p: 0.5 }, LayerSpec::Tanh]),
        // Runs that the compiled plan fuses.
        ("conv2d+relu+maxpool2d", vec![conv(3, 3, 1, 1, 1, 1), LayerSpec::Relu, maxpool(2, 2, 0)]),
        ("conv2d stride 2+relu+maxpool2d 2/1", vec![conv(4, 3, 2, 1, 1, 1), LayerSpec::Relu, maxpool(2, 1, 0)]),
        ("conv2d groups+maxpool2d 3/2 pad 1", vec![conv(4, 3, 1, 1, 1, 2), maxpool(3, 2, 1)]),
        ("conv2d+relu", vec![conv(3, 3, 1, 0, 1, 1), LayerSpec::Relu]),
        (
            "linear+relu",
            vec![LayerSpec::Flatten, LayerSpec::Linear { weight: "fc".into(), out: Some(5) }, LayerSpec::Relu],
        ),
    ];
    for (what, layers) in cases {
        let mut spec = layer_spec(input, head(layers));
        spec.mean = Some(vec![0.3, 0.6]);
        spec.std = Some(vec![0.5, 0.25]);
        let weights = spec.init_weights(7).unwrap();
        check_fd(&spec, &weights, what);
    }
}

fn maxpool(kernel: usize, stride: usize, padding: usize) -> LayerSpec {
    LayerSpec::Maxpool2d { kernel, stride: Some(stride), padding }
}

#[test]
fn batchnorm_matches_finite_differences() {
    let bn = || LayerSpec::Batchnorm2d { weight: "bn".into(), eps: 1e-5 };
    let t = |v: [f64; 2]| Tensor::new(&v, &Device::Cpu).unwrap();
    let with_bn = |mut weights: HashMap<String, Tensor>| {
        weights.insert("bn.weight".into(), t([1.5, 0.7]));
        weights.insert("bn.bias".into(), t([0.1, -0.2]));
        weights.insert("bn.running_mean".into(), t([0.4, 0.6]));
        weights.insert("bn.running_var".into(), t([0.3, 2.0]));
        weights
    };
    let spec = layer_spec([2, 4, 4], head(vec![bn()]));
    let weights = with_bn(layer_spec([2, 4, 4], head(vec![])).init_weights(3).unwrap());
    check_fd(&spec, &weights, "batchnorm2d");
    // Folded into the preceding convolution's kernel and bias.
    let spec = layer_spec([2, 6, 6], head(vec![conv(2, 3, 1, 1, 1, 1), LayerSpec::Relu, maxpool(2, 2, 0)]));
    let weights = with_bn(spec.init_weights(4).unwrap());
    let mut spec = spec;
    spec.layers.insert(1, bn());
    check_fd(&spec, &weights, "conv2d+batchnorm2d+relu+maxpool2d");
}

#[test]
fn compiled_plan_routes_tied_gradients_like_the_layers() {
    // Inputs and weights on a coarse grid, so convolution outputs and pooling windows tie often;
    // the compiled plan (fused conv→ReLU, then pooling) must pick the same maxima as the
    // layer-by-layer path, in f32 where both sum exactly.
    use gauntlet::models::autograd_loss_and_grad;
    let layers = vec![
        LayerSpec::Conv2d {
            weight: "c1".into(),
            stride: 1,
            padding: 1,
            dilation: 1,
            groups: 1,
            out: Some(4),
            kernel: Some(3),
        },
        LayerSpec::Relu,
        maxpool(3, 2, 1),
        LayerSpec::Conv2d {
            weight: "c2".into(),
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
            out: Some(4),
            kernel: Some(2),
        },
        maxpool(2, 1, 0),
        LayerSpec::Flatten,
        LayerSpec::Linear { weight: "fc".into(), out: Some(6) },
        LayerSpec::Relu,
        LayerSpec::Linear { weight: "head".into(), out: Some(3) },
    ];
    let spec = layer_spec([2, 9, 9], layers);
    // Multiples of 1/4: sums are exact, so exact zeros (ReLU's kink) and exact ties are common.
    let grid = |shape: (usize, usize, usize, usize), seed: u64, lo: f64| {
        let quarters = ((tied_input(shape, seed) + 0.3).unwrap() * 4.0).unwrap().round().unwrap();
        ((quarters / 4.0).unwrap() + lo).unwrap()
    };
    let mut weights = spec.init_weights(5).unwrap();
    weights.insert("c1.weight".into(), grid((4, 2, 3, 3), 21, -0.5));
    weights.insert("c1.bias".into(), Tensor::new(&[0.0f64, 0.0, 0.25, -0.25], &Device::Cpu).unwrap());
    weights.insert("c2.weight".into(), grid((4, 4, 2, 2), 22, -0.5));
    let weights: HashMap<String, Tensor> =
        weights.into_iter().map(|(k, v)| (k, v.to_dtype(DType::F32).unwrap())).collect();
    let model = spec.build(&weights, Path::new("ties"), DType::F32, &Device::Cpu).unwrap();
    assert!(model.executor().is_ok(), "not compiled");
    let x = grid((3, 2, 9, 9), 23, 0.0).to_dtype(DType::F32).unwrap();
    let goal = Goal::untargeted(vec![0, 1, 2]);
    for loss in [Loss::CrossEntropy, Loss::Margin] {
        let fused = model.loss_and_grad(&x, &goal, loss).unwrap();
        let layered = autograd_loss_and_grad(&model, &x, &goal, loss).unwrap();
        assert!(max_rel_err(&fused.logits, &layered.logits) < 1e-6, "{loss:?} logits");
        assert!(max_rel_err(&fused.grad, &layered.grad) < 1e-6, "{loss:?} gradient");
    }
}

#[test]
fn max_pool_routes_the_gradient_to_the_maximum() {
    // candle's own max_pool2d backward scales by 1/k² instead; ours must route it whole.
    let x = Tensor::new(&[[[[1f64, 5.0], [2.0, 3.0]]]], &Device::Cpu).unwrap();
    let var = candle_core::Var::from_tensor(&x).unwrap();
    let w = gauntlet::models::ops::Window::square(2, 2, 0);
    let y = gauntlet::models::ops::max_pool2d(var.as_tensor(), w).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let grad = g.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(grad, vec![0.0, 1.0, 0.0, 0.0]);
}

/// Random values on a coarse grid, so that pooling windows tie often.
fn tied_input(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let mut state = seed;
    let v: Vec<f64> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % 4) as f64 / 4.0 - 0.3
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Value and input gradient of sum(f(x) · r) for a fixed random r.
fn value_and_grad(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> (Vec<f64>, Vec<f64>) {
    let var = candle_core::Var::from_tensor(x).unwrap();
    let y = f(var.as_tensor());
    let r = tied_input(y.dims4().unwrap(), 99).affine(1.0, 0.55).unwrap();
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = g.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    (y.flatten_all().unwrap().to_vec1::<f64>().unwrap(), grad)
}

#[test]
fn cpu_kernels_match_the_candle_op_versions() {
    use gauntlet::models::conv::{conv2d, ConvParams};
    use gauntlet::models::{cpu_ops, ops};
    let x = tied_input((2, 4, 9, 9), 5);
    for (k, s, p) in [(2, 2, 0), (3, 2, 1), (2, 1, 0), (3, 3, 1)] {
        let w = ops::Window::square(k, s, p);
        let ours = value_and_grad(&x, |t| cpu_ops::max_pool2d(t, w).unwrap());
        let reference = value_and_grad(&x, |t| ops::max_pool2d(t, w).unwrap());
        assert_eq!(ours, reference, "max pool {k}/{s}/{p}");
    }
    let relu = value_and_grad(&x, |t| cpu_ops::relu(t).unwrap());
    assert_eq!(relu, value_and_grad(&x, |t| ops::relu(t).unwrap()));
    let b = Tensor::new(&[0.1f64, -0.2, 0.3, 0.5], &Device::Cpu).unwrap();
    let bias = value_and_grad(&x, |t| cpu_ops::add_channel_bias(t, &b).unwrap());
    assert_eq!(bias, value_and_grad(&x, |t| t.broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap()).unwrap()));
    // The convolution against candle's own conv2d (slow, but an independent implementation).
    for (stride, padding, dilation, groups) in [(1, 1, 1, 1), (2, 0, 1, 2), (1, 2, 2, 4), (2, 1, 1, 1)] {
        let kernel = tied_input((8, 4 / groups, 3, 3), 11 + stride as u64);
        let p = ConvParams { stride, padding, dilation, groups };
        let (v1, g1) = value_and_grad(&x, |t| conv2d(t, &kernel, p).unwrap());
        let (v2, g2) = value_and_grad(&x, |t| t.conv2d(&kernel, padding, stride, dilation, groups).unwrap());
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(&v1, &v2) && close(&g1, &g2), "conv {p:?}");
    }
}

/// Gradients of sum(f(x, w) · r) with respect to both arguments.
fn both_grads(x: &Tensor, w: &Tensor, f: impl Fn(&Tensor, &Tensor) -> Tensor) -> (Vec<f64>, Vec<f64>) {
    let (xv, wv) = (candle_core::Var::from_tensor(x).unwrap(), candle_core::Var::from_tensor(w).unwrap());
    let y = f(xv.as_tensor(), wv.as_tensor());
    let r = (y.ones_like().unwrap() * 0.75).unwrap();
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |t: &Tensor| g.get(t).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    (flat(xv.as_tensor()), flat(wv.as_tensor()))
}

#[test]
fn training_gradients_match_candle() {
    use gauntlet::models::conv::{conv2d, ConvParams};
    use gauntlet::models::linear::linear;
    let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-10);
    let x = tied_input((3, 4, 7, 7), 21);
    let k = tied_input((8, 2, 3, 3), 22);
    let p = ConvParams { stride: 2, padding: 1, dilation: 1, groups: 2 };
    let (a, b) = (
        both_grads(&x, &k, |x, k| conv2d(x, k, p).unwrap()),
        both_grads(&x, &k, |x, k| x.conv2d(k, 1, 2, 1, 2).unwrap()),
    );
    assert!(close(&a.0, &b.0) && close(&a.1, &b.1), "conv gradients");
    let x = tied_input((5, 12, 1, 1), 23).flatten_from(1).unwrap();
    let w = tied_input((7, 12, 1, 1), 24).flatten_from(1).unwrap();
    let (a, b) = (
        both_grads(&x, &w, |x, w| linear(x, w).unwrap()),
        both_grads(&x, &w, |x, w| x.matmul(&w.t().unwrap()).unwrap()),
    );
    assert!(close(&a.0, &b.0) && close(&a.1, &b.1), "linear gradients");
}

#[test]
fn dlr_losses_match_their_definition_and_finite_differences() {
    // 4 classes for the targeted variant; logits chosen by hand.
    let z = Tensor::new(&[[3.0f64, 1.0, 2.0, -1.0], [0.5, 2.5, -0.5, 1.5]], &Device::Cpu).unwrap();
    let mut goal = Goal::untargeted(vec![0, 0]);
    let dlr = objective(&z, &goal, Loss::Dlr).unwrap().to_vec1::<f64>().unwrap();
    // Row 0: y is the top class: −(3 − 2)/(3 − 1); row 1: −(0.5 − 2.5)/(2.5 − 0.5).
    assert!((dlr[0] + 0.5).abs() < 1e-9 && (dlr[1] - 1.0).abs() < 1e-9, "{dlr:?}");
    goal.guide = Some(vec![2, 3]);
    let t = objective(&z, &goal, Loss::DlrTargeted).unwrap().to_vec1::<f64>().unwrap();
    // −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2): row 0 −(3 − 2)/(3 − 0), row 1 −(0.5 − 1.5)/(2.5 − 0).
    assert!((t[0] + 1.0 / 3.0).abs() < 1e-9 && (t[1] - 0.4).abs() < 1e-9, "{t:?}");
    // Gradient with respect to the logits against central differences.
    for loss in [Loss::Dlr, Loss::DlrTargeted] {
        let v = candle_core::Var::from_tensor(&z).unwrap();
        let g = objective(v.as_tensor(), &goal, loss).unwrap().sum_all().unwrap().backward().unwrap();
        let grad = g.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = z.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for i in 0..base.len() {
            let at = |d: f64| {
                let mut p = base.clone();
                p[i] += d;
                let t = Tensor::from_vec(p, (2, 4), &Device::Cpu).unwrap();
                objective(&t, &goal, loss).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
            };
            let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
            assert!((fd - grad[i]).abs() < 1e-6, "{loss:?} logit {i}: fd {fd}, grad {}", grad[i]);
        }
    }
}

#[test]
fn hand_written_backward_equals_autograd() {
    use gauntlet::models::autograd_loss_and_grad;
    let model = load_model(Path::new("tests/golden/allops.toml"), DType::F64, &Device::Cpu).unwrap();
    let g = golden();
    for loss in [Loss::CrossEntropy, Loss::Margin] {
        for goal in [Goal::untargeted(labels(&g)), Goal::targeted(vec![1, 2, 3, 4, 5, 6])] {
            let fast = model.loss_and_grad(&g["input"], &goal, loss).unwrap();
            let slow = autograd_loss_and_grad(&model, &g["input"], &goal, loss).unwrap();
            assert!(max_rel_err(&fast.grad, &slow.grad) < 1e-12, "{loss:?} {}", goal.targeted);
            assert!(max_rel_err(&fast.loss, &slow.loss) < 1e-12);
        }
    }
}
