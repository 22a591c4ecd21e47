//! Adversarial examples for people to look at: the clean image, the adversarial one and their
//! difference, as PNGs, plus an NPZ of the adversarial inputs with labels and predictions.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageBuffer, ImageFormat, Luma, Rgb};
use ndarray::{Array1, Array4};

use super::write::write_atomic;
use crate::{Error, Result};

/// One verified adversarial example beside its clean image.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvExample {
    pub attack: String,
    /// The sample's position in the evaluated dataset.
    pub index: usize,
    pub label: u32,
    pub clean_pred: u32,
    pub adv_pred: u32,
    /// The smallest ε at which the attack broke the sample.
    pub eps: f64,
    pub linf: f64,
    pub l2: f64,
    /// (C, H, W).
    pub shape: [usize; 3],
    pub clean: Vec<f32>,
    pub adv: Vec<f32>,
}

/// Encodes a (C, H, W) image with values in `[lo, hi]` as an 8-bit PNG (grey for 1 channel, RGB
/// for 3; other channel counts show the first channel), enlarged `scale` times (nearest neighbour).
pub fn png(pixels: &[f32], shape: [usize; 3], bounds: [f32; 2], scale: u32) -> Vec<u8> {
    let [c, h, w] = shape;
    let range = (bounds[1] - bounds[0]).max(f32::EPSILON);
    let byte = |v: f32| (((v - bounds[0]) / range).clamp(0.0, 1.0) * 255.0).round() as u8;
    let s = scale.max(1);
    let (ow, oh) = (w as u32 * s, h as u32 * s);
    let at = |ch: usize, x: u32, y: u32| byte(pixels[ch * h * w + (y / s) as usize * w + (x / s) as usize]);
    let mut buf = Cursor::new(Vec::new());
    let written = if c == 3 {
        ImageBuffer::from_fn(ow, oh, |x, y| Rgb([at(0, x, y), at(1, x, y), at(2, x, y)]))
            .write_to(&mut buf, ImageFormat::Png)
    } else {
        ImageBuffer::from_fn(ow, oh, |x, y| Luma([at(0, x, y)])).write_to(&mut buf, ImageFormat::Png)
    };
    written.expect("PNG encoding into memory cannot fail");
    buf.into_inner()
}

/// The perturbation made visible: mid-grey is no change, scaled so the largest |δ| reaches black
/// or white.
pub fn diff_png(ex: &AdvExample, scale: u32) -> Vec<u8> {
    let delta: Vec<f32> = ex.adv.iter().zip(&ex.clean).map(|(a, c)| a - c).collect();
    let m = delta.iter().fold(0f32, |m, d| m.max(d.abs())).max(1e-12);
    let shown: Vec<f32> = delta.iter().map(|d| 0.5 + 0.5 * d / m).collect();
    png(&shown, ex.shape, [0.0, 1.0], scale)
}

/// Writes `DIR/NNNN-ATTACK-{clean,adv,diff}.png` per example, `DIR/adversarial.npz` (arrays `x_adv`
/// and `x_clean` (N,C,H,W) float32; `index`, `label`, `clean_pred`, `adv_pred`, `attack` (position in
/// `attacks.txt`) int64; `eps`, `linf`, `l2` float64) and `DIR/attacks.txt`. Returns the files.
pub fn save(dir: &Path, examples: &[AdvExample], bounds: [f32; 2]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Output { path: dir.display().to_string(), message: format!("cannot create ({e})") })?;
    let mut files = Vec::new();
    let mut attacks: Vec<String> = Vec::new();
    for ex in examples {
        if !attacks.contains(&ex.attack) {
            attacks.push(ex.attack.clone());
        }
        let stem = format!("{:05}-{}", ex.index, ex.attack);
        for (kind, bytes) in [
            ("clean", png(&ex.clean, ex.shape, bounds, 1)),
            ("adv", png(&ex.adv, ex.shape, bounds, 1)),
            ("diff", diff_png(ex, 1)),
        ] {
            let path = dir.join(format!("{stem}-{kind}.png"));
            write_atomic(&path, &bytes)?;
            files.push(path);
        }
    }
    let path = dir.join("adversarial.npz");
    write_atomic(&path, &npz(examples, &attacks)?)?;
    files.push(path);
    let path = dir.join("attacks.txt");
    write_atomic(&path, (attacks.join("\n") + "\n").as_bytes())?;
    files.push(path);
    Ok(files)
}

fn npz(examples: &[AdvExample], attacks: &[String]) -> Result<Vec<u8>> {
    let n = examples.len();
    let [c, h, w] = examples.first().map_or([0, 0, 0], |e| e.shape);
    let stack = |f: fn(&AdvExample) -> &[f32]| {
        let v: Vec<f32> = examples.iter().flat_map(|e| f(e).iter().copied()).collect();
        Array4::from_shape_vec((n, c, h, w), v).expect("examples share one shape")
    };
    let ints = |f: &dyn Fn(&AdvExample) -> i64| Array1::from_iter(examples.iter().map(f));
    let floats = |f: fn(&AdvExample) -> f64| Array1::from_iter(examples.iter().map(f));
    let err = |e: String| Error::Output { path: "adversarial.npz".into(), message: e };
    let mut w = ndarray_npy::NpzWriter::new(Cursor::new(Vec::new()));
    (|| -> std::result::Result<(), ndarray_npy::WriteNpzError> {
        w.add_array("x_adv", &stack(|e| &e.adv))?;
        w.add_array("x_clean", &stack(|e| &e.clean))?;
        w.add_array("index", &ints(&|e| e.index as i64))?;
        w.add_array("label", &ints(&|e| e.label as i64))?;
        w.add_array("clean_pred", &ints(&|e| e.clean_pred as i64))?;
        w.add_array("adv_pred", &ints(&|e| e.adv_pred as i64))?;
        w.add_array("attack", &ints(&|e| attacks.iter().position(|a| *a == e.attack).unwrap_or(0) as i64))?;
        w.add_array("eps", &floats(|e| e.eps))?;
        w.add_array("linf", &floats(|e| e.linf))?;
        w.add_array("l2", &floats(|e| e.l2))?;
        Ok(())
    })()
    .map_err(|e| err(e.to_string()))?;
    Ok(w.finish().map_err(|e| err(e.to_string()))?.into_inner())
}
