//! Labelled image datasets for Gauntlet. Every loader yields an in-memory [`ImageSet`] of
//! `f32` images in `[0, 1]`, (C, H, W) layout, and `u32` labels.
//!
//! Formats: MNIST-style IDX (raw or gzip; a folder, or the images file with its labels file
//! beside it), NPY/NPZ (`images` N×C×H×W or N×H×W×C, uint8 or float in [0, 1], and `labels`),
//! and safetensors (`images`, `labels`).

mod error;
pub mod idx;
pub mod npy;
pub mod safetensors_set;
pub mod samples;

use std::path::Path;

pub use error::{DatasetError, Result};

/// One labelled image: (C, H, W) values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub image: Vec<f32>,
    pub label: u32,
}

/// A source of labelled images.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Image shape (C, H, W).
    fn shape(&self) -> [usize; 3];
    fn get(&self, i: usize) -> Result<Sample>;
}

/// A dataset held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Where it came from, for messages and reports.
    pub source: String,
    pub shape: [usize; 3],
    /// N·C·H·W values, sample-major.
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
}

impl ImageSet {
    pub fn new(source: impl Into<String>, shape: [usize; 3], images: Vec<f32>, labels: Vec<u32>) -> Result<Self> {
        let source = source.into();
        let per: usize = shape.iter().product();
        if per == 0 || images.len() != per * labels.len() {
            return Err(DatasetError::Invalid {
                path: source.into(),
                message: format!("{} values do not make {} images of shape {shape:?}", images.len(), labels.len()),
            });
        }
        Ok(ImageSet { source, shape, images, labels })
    }

    /// Keeps the first `n` samples.
    pub fn truncate(&mut self, n: usize) {
        if n < self.labels.len() {
            self.labels.truncate(n);
            self.images.truncate(n * self.per_image());
        }
    }

    /// The samples `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(idx.len() * self.per_image());
        for &i in idx {
            images.extend_from_slice(self.image(i));
        }
        ImageSet {
            source: self.source.clone(),
            shape: self.shape,
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    pub fn per_image(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let p = self.per_image();
        &self.images[i * p..(i + 1) * p]
    }

    /// Checks the data against what a model expects: image shape, label range, values in [0, 1].
    pub fn validate(&self, shape: [usize; 3], classes: usize) -> Result<()> {
        let bad = |message: String| Err(DatasetError::Invalid { path: self.source.clone().into(), message });
        if self.labels.is_empty() {
            return bad("the dataset is empty".into());
        }
        if self.shape != shape {
            return bad(format!(
                "images have shape (C, H, W) = {:?} but the model expects {shape:?}; resize the data or pick the matching model",
                self.shape
            ));
        }
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
            return bad(format!("label {l} of sample {i} is out of range for a model with {classes} classes"));
        }
        if let Some(pos) = self.images.iter().position(|v| !v.is_finite()) {
            return bad(format!("sample {} holds a NaN or infinite value", pos / self.per_image()));
        }
        if let Some(pos) = self.images.iter().position(|&v| !(0.0..=1.0).contains(&v)) {
            return bad(format!(
                "sample {} has value {} outside [0, 1]; images must be in pixel space [0, 1] (normalization belongs in the model spec's mean/std)",
                pos / self.per_image(),
                self.images[pos]
            ));
        }
        Ok(())
    }
}

impl Dataset for ImageSet {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn get(&self, i: usize) -> Result<Sample> {
        if i >= self.labels.len() {
            return Err(DatasetError::Invalid {
                path: self.source.clone().into(),
                message: format!("sample {i} is out of range (the dataset has {})", self.labels.len()),
            });
        }
        Ok(Sample { image: self.image(i).to_vec(), label: self.labels[i] })
    }
}

/// Opens a dataset by path, choosing the loader from the extension (or a folder of IDX files).
pub fn open(path: &Path) -> Result<ImageSet> {
    if !path.exists() {
        return Err(DatasetError::Io { path: path.into(), message: "no such file or folder".into() });
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if path.is_dir() {
        return idx::open(path);
    }
    if name.ends_with(".npz") {
        npy::open_npz(path)
    } else if name.ends_with(".npy") {
        npy::open_npy(path)
    } else if name.ends_with(".safetensors") {
        safetensors_set::open(path)
    } else if name.contains("idx") || name.contains("ubyte") {
        idx::open(path)
    } else {
        Err(DatasetError::Format {
            path: path.into(),
            message: "unknown dataset format; use IDX (…-images-idx3-ubyte[.gz] or a folder of them), .npz, .npy or .safetensors".into(),
        })
    }
}

/// The files [`open`] reads for `path` (an IDX images file and its labels, or the one file), so
/// that a report can record what its numbers were measured on.
pub fn input_files(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if path.is_dir() || name.contains("idx") || name.contains("ubyte") {
        idx::files(path)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// Converts raw pixels to floats in [0, 1], transposing N×H×W×C to N×C×H×W when `channels_last`.
pub(crate) fn to_chw(values: Vec<f32>, n: usize, dims: [usize; 3], channels_last: bool) -> (Vec<f32>, [usize; 3]) {
    if !channels_last {
        return (values, dims);
    }
    let [h, w, c] = dims;
    let mut out = vec![0f32; values.len()];
    for s in 0..n {
        let base = s * h * w * c;
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out[base + (ch * h + y) * w + x] = values[base + (y * w + x) * c + ch];
                }
            }
        }
    }
    (out, [c, h, w])
}

/// Decides the layout of a 4-D image array: channels first if dim 1 is a plausible channel count.
pub(crate) fn layout(dims: &[usize]) -> Option<(usize, [usize; 3], bool)> {
    match *dims {
        [n, h, w] => Some((n, [1, h, w], false)),
        [n, a, b, c] => {
            let chan = |d: usize| d == 1 || d == 3 || d == 4;
            if chan(a) && !chan(c) {
                Some((n, [a, b, c], false))
            } else if chan(c) {
                Some((n, [a, b, c], true))
            } else {
                Some((n, [a, b, c], false))
            }
        }
        _ => None,
    }
}
