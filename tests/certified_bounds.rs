//! Certified bounds (IBP and CROWN): sound on random networks (no point of the ball, found by
//! sampling, vertices or a gradient attack, has a margin below the bound), exact on a tiny
//! network where the true minimum is known by enumerating the linear regions, CROWN never looser
//! than IBP, and equal to an independent float64 implementation (golden files made by
//! `tests/golden/bounds/make_bounds.py`).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gauntlet::models::bounds::{Ball, BoundNet, Certificate, Method};
use gauntlet::models::{load_classifier, Bounds, Classifier, Goal, LoadOptions, Loss, ModelSpec, Sequential};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A spec'd network with random weights.
fn random_net(layers: &str, input: [usize; 3], classes: usize, seed: u64) -> Sequential {
    let text = format!("input = {input:?}\nclasses = {classes}\nmean = [0.4]\nstd = [0.3]\nlayers = [{layers}]\n");
    let spec = ModelSpec::parse(&text, Path::new("random.toml")).unwrap();
    let weights = spec.init_weights(seed).unwrap();
    spec.build(&weights, Path::new("random.toml"), DType::F32, &Device::Cpu).unwrap()
}

const ARCHS: [(&str, [usize; 3]); 4] = [
    (
        r#"{ op = "flatten" }, { op = "linear", weight = "a", out = 24 }, { op = "relu" }, { op = "linear", weight = "b", out = 16 }, { op = "relu" }, { op = "linear", weight = "c", out = 4 }"#,
        [1, 5, 5],
    ),
    (
        r#"{ op = "conv2d", weight = "a", out = 4, kernel = 3, padding = 1 }, { op = "relu" }, { op = "maxpool2d", kernel = 2 }, { op = "conv2d", weight = "b", out = 6, kernel = 3 }, { op = "leaky_relu", slope = 0.1 }, { op = "flatten" }, { op = "linear", weight = "c", out = 4 }"#,
        [2, 8, 8],
    ),
    (
        r#"{ op = "conv2d", weight = "a", out = 5, kernel = 3, stride = 2, padding = 1 }, { op = "relu" }, { op = "avgpool2d", kernel = 2 }, { op = "flatten" }, { op = "linear", weight = "b", out = 12 }, { op = "relu" }, { op = "linear", weight = "c", out = 4 }"#,
        [1, 8, 8],
    ),
    (
        r#"{ op = "conv2d", weight = "a", out = 3, kernel = 3 }, { op = "relu" }, { op = "maxpool2d", kernel = 3, stride = 2, padding = 1 }, { op = "conv2d", weight = "b", out = 4, kernel = 2 }, { op = "relu" }, { op = "flatten" }, { op = "linear", weight = "c", out = 4 }"#,
        [1, 7, 7],
    ),
];

fn logits(model: &dyn Classifier, x: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let n = x.len() / shape.iter().product::<usize>();
    let t = Tensor::from_slice(x, (n, shape[0], shape[1], shape[2]), &Device::Cpu).unwrap();
    model.logits(&t).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Points of the ball ∩ [0, 1]: random ones, random vertices of the box (L∞), and the end of a
/// signed-gradient attack on the margin of every class.
fn ball_points(model: &dyn Classifier, x: &[f32], y: u32, eps: f32, ball: Ball, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
    let shape = model.input_shape();
    let project = |p: &mut Vec<f32>| {
        if ball == Ball::L2 {
            let d: f32 = p.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
            if d > eps {
                p.iter_mut().zip(x).for_each(|(a, b)| *a = b + (*a - b) * eps / d * 0.999);
            }
        }
        p.iter_mut().zip(x).for_each(|(a, b)| *a = a.clamp((b - eps).max(0.0), (b + eps).min(1.0)));
    };
    let mut points = Vec::new();
    for k in 0..300 {
        let mut p: Vec<f32> = x
            .iter()
            .map(|&v| {
                let d: f32 =
                    if k % 2 == 0 { rng.random_range(-1.0f32..1.0) } else { [-1.0f32, 1.0][rng.random_range(0..2)] };
                v + eps * d
            })
            .collect();
        project(&mut p);
        points.push(p);
    }
    for target in 0..model.num_classes() as u32 {
        if target == y {
            continue;
        }
        let mut p = x.to_vec();
        for _ in 0..30 {
            let t = Tensor::from_slice(&p, (1, shape[0], shape[1], shape[2]), &Device::Cpu).unwrap();
            let goal = Goal::targeted(vec![target]);
            let g = model.loss_and_grad(&t, &goal, Loss::Margin).unwrap();
            let g = g.grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let norm = g.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            for (a, gi) in p.iter_mut().zip(&g) {
                *a += match ball {
                    Ball::Linf => eps / 8.0 * gi.signum(),
                    Ball::L2 => eps / 8.0 * gi / norm,
                };
            }
            project(&mut p);
        }
        points.push(p);
    }
    points
}

fn images(n: usize, len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    // Some pixels at the ends of the range, so that clipping to the pixel box matters.
    (0..n * len).map(|i| if i % 5 == 0 { (i % 2) as f32 } else { rng.random_range(0.0f32..1.0) }).collect()
}

#[test]
fn no_point_of_the_ball_beats_the_bounds_on_random_networks() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut certified = [0usize; 2];
    for (a, (layers, input)) in ARCHS.iter().enumerate() {
        for seed in 0..3u64 {
            let model = random_net(layers, *input, 4, 100 * a as u64 + seed);
            let net = model.bound_net().unwrap();
            let len: usize = input.iter().product();
            let x = images(4, len, &mut rng);
            let clean = logits(&model, &x, *input);
            let labels: Vec<u32> = clean
                .chunks(4)
                .enumerate()
                .map(|(s, z)| if s == 3 { 0 } else { (0..4).max_by(|&i, &j| z[i].total_cmp(&z[j])).unwrap() as u32 })
                .collect();
            for (ball, eps) in [(Ball::Linf, 0.01), (Ball::Linf, 0.04), (Ball::L2, 0.05), (Ball::L2, 0.3)] {
                let ibp = net.certify(&x, &labels, eps, ball, Method::Ibp, Bounds::default());
                let crown = net.certify(&x, &labels, eps, ball, Method::Crown, Bounds::default());
                for s in 0..labels.len() {
                    let xs = &x[s * len..][..len];
                    for (i, c) in ibp[s].margins.iter().zip(&crown[s].margins) {
                        assert!(c >= i, "arch {a} seed {seed}: CROWN {c} looser than IBP {i}");
                    }
                    certified[0] += ibp[s].certified() as usize;
                    certified[1] += crown[s].certified() as usize;
                    for p in ball_points(&model, xs, labels[s], eps, ball, &mut rng) {
                        let z = logits(&model, &p, *input);
                        let y = labels[s] as usize;
                        for cert in [&ibp[s], &crown[s]] {
                            for j in (0..4).filter(|&j| j != y) {
                                assert!(
                                    z[y] - z[j] >= cert.margins[j] - 1e-5,
                                    "arch {a} seed {seed} sample {s} {ball:?} ε {eps}: margin {} below its bound {}",
                                    z[y] - z[j],
                                    cert.margins[j]
                                );
                            }
                            for ((v, lo), hi) in z.iter().zip(&cert.logit_lower).zip(&cert.logit_upper) {
                                assert!(*v >= lo - 1e-5 && *v <= hi + 1e-5, "logit {v} outside [{lo}, {hi}]");
                            }
                        }
                    }
                }
            }
        }
    }
    // The test must be able to fail: some samples are certified, and CROWN certifies more.
    assert!(certified[0] > 0 && certified[1] > certified[0], "certified (IBP, CROWN): {certified:?}");
}

/// f(x) = W2 relu(W1 x + b1) + b2 on two inputs: the minimum of a margin over a box is at a
/// vertex of the arrangement of the hidden units' lines and the box's sides.
#[test]
fn bounds_hold_against_the_exact_minimum_on_a_tiny_network() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut gaps = Vec::new();
    for trial in 0..20 {
        let text = "input = [1, 1, 2]\nclasses = 2\nlayers = [{ op = \"flatten\" }, { op = \"linear\", weight = \"a\", out = 6 }, { op = \"relu\" }, { op = \"linear\", weight = \"b\", out = 2 }]\n";
        let spec = ModelSpec::parse(text, Path::new("tiny.toml")).unwrap();
        let w = spec.init_weights(trial).unwrap();
        let model = spec.build(&w, Path::new("tiny.toml"), DType::F32, &Device::Cpu).unwrap();
        let get = |n: &str| w[n].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (w1, b1, w2, b2) = (get("a.weight"), get("a.bias"), get("b.weight"), get("b.bias"));
        let f = |p: [f64; 2]| -> f64 {
            let mut z = [b2[0] as f64, b2[1] as f64];
            for h in 0..6 {
                let a = (w1[2 * h] as f64 * p[0] + w1[2 * h + 1] as f64 * p[1] + b1[h] as f64).max(0.0);
                z[0] += w2[h] as f64 * a;
                z[1] += w2[6 + h] as f64 * a;
            }
            z[0] - z[1]
        };
        let x = [rng.random_range(0.2f32..0.8), rng.random_range(0.2f32..0.8)];
        let eps = rng.random_range(0.05f32..0.3);
        let (lo, hi) = (x.map(|v| (v - eps).max(0.0) as f64), x.map(|v| (v + eps).min(1.0) as f64));
        // Lines a·p = c: the hidden units' and the box's sides.
        let mut lines: Vec<([f64; 2], f64)> =
            (0..6).map(|h| ([w1[2 * h] as f64, w1[2 * h + 1] as f64], -b1[h] as f64)).collect();
        lines.extend([([1.0, 0.0], lo[0]), ([1.0, 0.0], hi[0]), ([0.0, 1.0], lo[1]), ([0.0, 1.0], hi[1])]);
        let mut exact = f64::INFINITY;
        for i in 0..lines.len() {
            for j in i + 1..lines.len() {
                let ((a, c), (b, d)) = (lines[i], lines[j]);
                let det = a[0] * b[1] - a[1] * b[0];
                if det.abs() < 1e-12 {
                    continue;
                }
                let p = [(c * b[1] - a[1] * d) / det, (a[0] * d - c * b[0]) / det];
                if (0..2).all(|k| p[k] >= lo[k] - 1e-9 && p[k] <= hi[k] + 1e-9) {
                    exact = exact.min(f(p));
                }
            }
        }
        for method in [Method::Ibp, Method::Crown] {
            let c = &model.bound_net().unwrap().certify(&x, &[0], eps, Ball::Linf, method, Bounds::default())[0];
            assert!(
                (c.margins[1] as f64) <= exact + 1e-5,
                "trial {trial} {method:?}: bound {} above the true minimum {exact}",
                c.margins[1]
            );
            if method == Method::Crown {
                gaps.push(exact - c.margins[1] as f64);
            }
        }
    }
    // CROWN is exact wherever no hidden unit is unstable; it cannot be loose everywhere.
    assert!(gaps.iter().any(|&g| g < 1e-3), "gaps {gaps:?}");
}

/// Bounds of the golden networks as the independent float64 implementation computed them.
#[test]
fn bounds_equal_an_independent_float64_implementation() {
    let dir = Path::new("tests/golden/bounds");
    let mut compared = 0;
    for name in ["mlp", "cnn", "cnn_maxpool", "residual"] {
        let golden: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let model =
            load_classifier(&dir.join(format!("{name}.onnx")), DType::F32, &Device::Cpu, &LoadOptions::default())
                .unwrap();
        let net: BoundNet = model.bound_net().unwrap();
        let floats = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap_or(f64::INFINITY) as f32))
                .collect()
        };
        let x = floats(&golden["images"]);
        let labels: Vec<u32> =
            golden["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        for case in golden["cases"].as_array().unwrap() {
            let ball = if case["norm"] == "linf" { Ball::Linf } else { Ball::L2 };
            let method = if case["method"] == "ibp" { Method::Ibp } else { Method::Crown };
            let eps = case["eps"].as_f64().unwrap() as f32;
            let certs: Vec<Certificate> = net.certify(&x, &labels, eps, ball, method, Bounds::default());
            let want = floats(&case["margins"]);
            let got: Vec<f32> = certs.iter().flat_map(|c| c.margins.clone()).collect();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if w.is_infinite() {
                    continue;
                }
                let tol = 2e-4 * (1.0 + w.abs());
                assert!(
                    g <= w && w - g <= tol,
                    "{name} {ball:?} ε {eps} {method:?} entry {i}: {g} where the reference has {w}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 100);
}

/// Pixel-space preprocessing outside the graph (`--mean/--std/--channel-order/--layout`) maps
/// onto the bounds' input: the bounds' clean logits are the model's, and no point of the ball
/// beats the bounds.
#[test]
fn preprocessing_outside_the_graph_is_bounded_too() {
    use gauntlet::models::preprocess::{ChannelOrder, Layout, Preprocess};
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let cases = [
        (
            "tests/golden/onnx/resnet_cifar.onnx",
            Preprocess {
                mean: vec![0.49, 0.48, 0.45],
                std: vec![0.25, 0.24, 0.26],
                channel_order: ChannelOrder::Bgr,
                layout: Layout::Nchw,
            },
        ),
        (
            "tests/golden/onnx/nhwc_input.onnx",
            Preprocess { mean: vec![0.13], std: vec![0.31], channel_order: ChannelOrder::Rgb, layout: Layout::Nhwc },
        ),
    ];
    for (path, pre) in cases {
        let opts = LoadOptions { preprocess: pre, ..Default::default() };
        let model = load_classifier(Path::new(path), DType::F32, &Device::Cpu, &opts).unwrap();
        let shape = model.input_shape();
        let len: usize = shape.iter().product();
        let net = model.bound_net().unwrap();
        let x = images(2, len, &mut rng);
        let z = logits(&*model, &x, shape);
        let k = model.num_classes();
        let labels: Vec<u32> =
            z.chunks(k).map(|z| (0..k).max_by(|&i, &j| z[i].total_cmp(&z[j])).unwrap() as u32).collect();
        for (ball, eps) in [(Ball::Linf, 0.002), (Ball::L2, 0.05)] {
            let certs = net.certify(&x, &labels, eps, ball, Method::Crown, Bounds::default());
            for (s, c) in certs.iter().enumerate() {
                for (a, b) in c.clean.iter().zip(&z[s * k..][..k]) {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{path}: clean logit {a} where the model gives {b}"
                    );
                }
                let xs = &x[s * len..][..len];
                for p in ball_points(&*model, xs, labels[s], eps, ball, &mut rng).iter().rev().take(60) {
                    let zp = logits(&*model, p, shape);
                    let y = labels[s] as usize;
                    for j in (0..k).filter(|&j| j != y) {
                        assert!(zp[y] - zp[j] >= c.margins[j] - 1e-5, "{path} {ball:?}: margin below its bound");
                    }
                }
            }
        }
    }
}
