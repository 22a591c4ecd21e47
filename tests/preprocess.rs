//! Pixel-space preprocessing: `Preprocess::apply` gives the documented numbers, and the input
//! gradient through a `Preprocessed` model is the chain rule through it (checked against finite
//! differences of a loss computed by hand, without candle).

use candle_core::{DType, Device, Tensor};
use gauntlet::models::preprocess::{ChannelOrder, Layout, Preprocess, Preprocessed};
use gauntlet::models::{Classifier, Goal, Loss, Result};

const C: usize = 3;
const H: usize = 2;
const W: usize = 2;
const K: usize = 4;

/// Pixel value of channel c, row y, column x of sample n.
fn pixel(n: usize, c: usize, y: usize, x: usize) -> f64 {
    0.05 + 0.9 * (((n * 31 + c * 7 + y * 3 + x * 5) % 17) as f64 / 16.0)
}

fn pixels(n: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for s in 0..n {
        for c in 0..C {
            for y in 0..H {
                for x in 0..W {
                    v.push(pixel(s, c, y, x));
                }
            }
        }
    }
    v
}

fn full() -> Preprocess {
    Preprocess {
        mean: vec![0.1, 0.2, 0.3],
        std: vec![0.5, 0.25, 0.2],
        channel_order: ChannelOrder::Bgr,
        layout: Layout::Nhwc,
    }
}

/// The model's own input for one pixel-space sample, by the documented steps: reverse the
/// channels, then `(x − mean[c]) / std[c]` in the model's channel order, then (H, W, C).
fn by_hand(pre: &Preprocess, x: &[f64]) -> Vec<f64> {
    let at = |v: &[f32], c: usize| if v.is_empty() { None } else { Some(v[if v.len() == 1 { 0 } else { c }] as f64) };
    let mut out = vec![0.0; C * H * W];
    for c in 0..C {
        let src = if pre.channel_order == ChannelOrder::Bgr { C - 1 - c } else { c };
        for y in 0..H {
            for xx in 0..W {
                let mut v = x[(src * H + y) * W + xx];
                if let Some(m) = at(&pre.mean, c) {
                    v -= m;
                }
                if let Some(s) = at(&pre.std, c) {
                    v /= s;
                }
                let i = match pre.layout {
                    Layout::Nchw => (c * H + y) * W + xx,
                    Layout::Nhwc => (y * W + xx) * C + c,
                };
                out[i] = v;
            }
        }
    }
    out
}

#[test]
fn apply_gives_the_documented_numbers() {
    let x = Tensor::from_vec(pixels(2), (2, C, H, W), &Device::Cpu).unwrap();
    for pre in [
        full(),
        Preprocess { mean: vec![0.5], std: vec![0.25], ..Default::default() },
        Preprocess { channel_order: ChannelOrder::Bgr, ..Default::default() },
        Preprocess { layout: Layout::Nhwc, ..Default::default() },
        Preprocess { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225], ..Default::default() },
    ] {
        let got = pre.apply(&x).unwrap();
        let want_dims = if pre.layout == Layout::Nhwc { vec![2, H, W, C] } else { vec![2, C, H, W] };
        assert_eq!(got.dims(), &want_dims[..]);
        let got: Vec<f64> = got.flatten_all().unwrap().to_vec1().unwrap();
        let all = pixels(2);
        let want: Vec<f64> = all.chunks(C * H * W).flat_map(|s| by_hand(&pre, s)).collect();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-6, "{}: value {i} is {a}, expected {b}", pre.describe());
        }
    }
    // One concrete value: pixel (0, 2, 1, 0) becomes model channel 0 under BGR, at NHWC (1, 0, 0).
    let got: Vec<f64> = full().apply(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!((got[(W) * C] - (pixel(0, 2, 1, 0) - 0.1) / 0.5).abs() < 1e-6);
    assert_eq!(full().describe(), "RGB→BGR, mean [0.1, 0.2, 0.3], std [0.5, 0.25, 0.2], NCHW→NHWC");
}

/// A linear classifier on its own (H, W, C) input: logits = A · vec(u) + b.
struct Linear {
    a: Vec<f64>,
    b: Vec<f64>,
    device: Device,
}

impl Linear {
    fn new() -> Self {
        let n = C * H * W;
        let a = (0..K * n).map(|i| ((i * 37 % 23) as f64 - 11.0) / 9.0).collect();
        let b = (0..K).map(|k| k as f64 * 0.1 - 0.15).collect();
        Linear { a, b, device: Device::Cpu }
    }

    fn logits_by_hand(&self, u: &[f64]) -> Vec<f64> {
        (0..K)
            .map(|k| self.b[k] + u.iter().enumerate().map(|(i, v)| self.a[k * u.len() + i] * v).sum::<f64>())
            .collect()
    }
}

impl Classifier for Linear {
    fn logits(&self, u: &Tensor) -> Result<Tensor> {
        let n = u.dim(0)?;
        let a = Tensor::from_vec(self.a.clone(), (K, C * H * W), &self.device)?;
        let b = Tensor::from_vec(self.b.clone(), (1, K), &self.device)?;
        Ok(u.reshape((n, C * H * W))?.matmul(&a.t()?)?.broadcast_add(&b)?)
    }
    fn input_shape(&self) -> [usize; 3] {
        [H, W, C]
    }
    fn num_classes(&self) -> usize {
        K
    }
    fn device(&self) -> &Device {
        &self.device
    }
}

fn cross_entropy(z: &[f64], y: usize) -> f64 {
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - z[y]
}

#[test]
fn gradient_through_preprocessing_is_the_chain_rule() {
    let model = Preprocessed::new(Linear::new(), full()).unwrap();
    assert_eq!(model.input_shape(), [C, H, W]);
    let n = 2;
    let labels = vec![1u32, 3];
    let xs = pixels(n);
    let x = Tensor::from_vec(xs.clone(), (n, C, H, W), &Device::Cpu).unwrap();
    assert_eq!(x.dtype(), DType::F64);
    let out = model.loss_and_grad(&x, &Goal::untargeted(labels.clone()), Loss::CrossEntropy).unwrap();
    let grad: Vec<f64> = out.grad.flatten_all().unwrap().to_vec1().unwrap();
    let logits: Vec<f64> = out.logits.flatten_all().unwrap().to_vec1().unwrap();
    let per = C * H * W;
    let pre = full();
    let inner = Linear::new();
    let loss = |s: &[f64], y: usize| cross_entropy(&inner.logits_by_hand(&by_hand(&pre, s)), y);
    for s in 0..n {
        let sample = &xs[s * per..(s + 1) * per];
        let z = inner.logits_by_hand(&by_hand(&pre, sample));
        for k in 0..K {
            assert!((logits[s * K + k] - z[k]).abs() < 1e-9);
        }
        for i in 0..per {
            let h = 1e-6;
            let (mut up, mut down) = (sample.to_vec(), sample.to_vec());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up, labels[s] as usize) - loss(&down, labels[s] as usize)) / (2.0 * h);
            let g = grad[s * per + i];
            assert!(
                (g - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                "sample {s} pixel {i}: gradient {g}, finite difference {fd}"
            );
        }
    }
    // The preprocessing matters: the gradient differs from the inner model's without it.
    let plain = Preprocessed::new(Linear::new(), Preprocess { layout: Layout::Nhwc, ..Default::default() }).unwrap();
    let g2: Vec<f64> = plain
        .loss_and_grad(&x, &Goal::untargeted(labels), Loss::CrossEntropy)
        .unwrap()
        .grad
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(grad.iter().zip(&g2).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn mean_and_std_are_checked_against_the_channels() {
    let bad = Preprocess { mean: vec![0.1, 0.2], ..Default::default() };
    let e = Preprocessed::new(Linear::new(), Preprocess { layout: Layout::Nhwc, ..bad }).err().unwrap().to_string();
    assert!(e.contains("--mean has 2 values") && e.contains("3 channels"), "{e}");
    let zero = Preprocess { std: vec![0.0], layout: Layout::Nhwc, ..Default::default() };
    assert!(Preprocessed::new(Linear::new(), zero).is_err());
}
