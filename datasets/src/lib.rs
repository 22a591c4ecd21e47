//! Labelled image datasets for Gauntlet. Every loader yields an in-memory [`ImageSet`] of
//! `f32` images in `[0, 1]`, (C, H, W) layout, and `u32` labels.
//!
//! Formats: MNIST-style IDX (raw or gzip; a folder, or the images file with its labels file
//! beside it), NPY/NPZ (`images` N×C×H×W or N×H×W×C, uint8 or float in [0, 1], and `labels`),
//! safetensors (`images`, `labels`), CIFAR-10/100 binary batches, class-per-folder image trees
//! and `path,label` CSVs (PNG, JPEG, BMP). `docs/DATASETS.md` describes each.

pub mod cifar;
mod error;
pub mod folder;
pub mod idx;
pub mod npy;
mod options;
pub mod safetensors_set;
pub mod samples;
mod source;
mod stream;

use std::path::{Path, PathBuf};

pub use error::{DatasetError, Result};
pub use options::{center_crop_chw, parse_crop, resize_chw, CifarKind, DataLayout, OpenOptions, Resize, RESIZE_FILTER};
pub use source::{open_source, Limited, Source, SCAN_BLOCK};

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
        self.validate_labels(shape, classes)?;
        self.validate_pixels(0)
    }

    /// The checks of [`ImageSet::validate`] that need no pixels: not empty, image shape, label range.
    pub fn validate_labels(&self, shape: [usize; 3], classes: usize) -> Result<()> {
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
        Ok(())
    }

    /// Every value finite and in [0, 1]; messages number samples from `first` (the index of this
    /// set's first sample in the whole dataset).
    pub fn validate_pixels(&self, first: usize) -> Result<()> {
        let bad = |message: String| Err(DatasetError::Invalid { path: self.source.clone().into(), message });
        if let Some(pos) = self.images.iter().position(|v| !v.is_finite()) {
            return bad(format!("sample {} holds a NaN or infinite value", first + pos / self.per_image()));
        }
        if let Some(pos) = self.images.iter().position(|&v| !(0.0..=1.0).contains(&v)) {
            return bad(format!(
                "sample {} has value {} outside [0, 1]; images must be in pixel space [0, 1] (normalization belongs in the model spec's mean/std)",
                first + pos / self.per_image(),
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

/// The formats [`open`] tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Idx,
    Npz,
    Npy,
    Safetensors,
    Cifar,
    ImageFolder,
    Csv,
}

/// Decides the format of `path`: by extension for files; for folders, IDX files, CIFAR batches or
/// class subfolders, in that order.
pub fn format_of(path: &Path) -> Result<Format> {
    if !path.exists() {
        return Err(DatasetError::Io { path: path.into(), message: "no such file or folder".into() });
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if path.is_dir() {
        return if idx::is_idx_folder(path) {
            Ok(Format::Idx)
        } else if cifar::is_cifar_folder(path) {
            Ok(Format::Cifar)
        } else if folder::is_image_folder(path) {
            Ok(Format::ImageFolder)
        } else {
            Err(DatasetError::Format {
                path: path.into(),
                message:
                    "the folder holds no IDX files, no CIFAR batches and no class subfolders; see docs/DATASETS.md"
                        .into(),
            })
        };
    }
    Ok(if name.ends_with(".npz") {
        Format::Npz
    } else if name.ends_with(".npy") {
        Format::Npy
    } else if name.ends_with(".safetensors") {
        Format::Safetensors
    } else if name.ends_with(".bin") {
        Format::Cifar
    } else if name.ends_with(".csv") {
        Format::Csv
    } else if name.contains("idx") || name.contains("ubyte") {
        Format::Idx
    } else {
        return Err(DatasetError::Format {
            path: path.into(),
            message: "unknown dataset format; use IDX (…-images-idx3-ubyte[.gz] or a folder of them), .npz, .npy, .safetensors, CIFAR .bin batches, an image folder or a .csv".into(),
        });
    })
}

/// Opens a dataset by path with the default options, choosing the loader by [`format_of`].
pub fn open(path: &Path) -> Result<ImageSet> {
    open_with(path, &OpenOptions::default())
}

/// Opens a dataset by path: loads it, then resizes and crops every image as `opts` asks.
pub fn open_with(path: &Path, opts: &OpenOptions) -> Result<ImageSet> {
    let set = match format_of(path)? {
        Format::Idx => idx::open(path)?,
        Format::Npz => npy::open_npz(path, opts.layout)?,
        Format::Npy => npy::open_npy(path, opts.layout)?,
        Format::Safetensors => safetensors_set::open(path, opts.layout)?,
        Format::Cifar => cifar::open(path, opts.cifar)?,
        // Decoded images are resized one by one, as they may differ in size.
        Format::ImageFolder => return folder::open_tree(path, opts),
        Format::Csv => return folder::open_csv(path, opts),
    };
    fit_all(set, opts)
}

/// Applies resize and center crop to every image of a set.
pub fn fit_all(set: ImageSet, opts: &OpenOptions) -> Result<ImageSet> {
    if opts.resize.is_none() && opts.center_crop.is_none() {
        return Ok(set);
    }
    let mut images = Vec::new();
    let mut shape = set.shape;
    for i in 0..set.labels.len() {
        let (img, s) = opts.fit(set.image(i), set.shape, &set.source)?;
        images.extend(img);
        shape = s;
    }
    ImageSet::new(set.source, shape, images, set.labels)
}

/// Every file [`open`] reads for `path` (IDX images and labels, CIFAR batches, each image of a
/// folder, a CSV and the images it lists, or the one file), so that a report can record what
/// its numbers were measured on.
pub fn input_files(path: &Path) -> Result<Vec<PathBuf>> {
    match format_of(path)? {
        Format::Idx => idx::files(path),
        Format::Cifar => cifar::files(path),
        Format::ImageFolder => Ok(folder::tree_entries(path)?.into_iter().map(|(p, _)| p).collect()),
        Format::Csv => {
            let mut files = vec![path.to_path_buf()];
            files.extend(folder::csv_entries(path)?.into_iter().map(|(p, _)| p));
            Ok(files)
        }
        Format::Npy => Ok(vec![path.to_path_buf(), npy::labels_path(path)?]),
        Format::Npz | Format::Safetensors => Ok(vec![path.to_path_buf()]),
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

/// Decides the layout of an image array: N×H×W is one channel; a 4-D array follows `layout`,
/// and under [`DataLayout::Auto`] is N×H×W×C only when the last axis is a plausible channel count
/// (1, 3 or 4) and the second is not, else N×C×H×W.
pub(crate) fn layout(dims: &[usize], layout: DataLayout) -> Option<(usize, [usize; 3], bool)> {
    match *dims {
        [n, h, w] => Some((n, [1, h, w], false)),
        [n, a, b, c] => {
            let chan = |d: usize| d == 1 || d == 3 || d == 4;
            let channels_last = match layout {
                DataLayout::Nchw => false,
                DataLayout::Nhwc => true,
                DataLayout::Auto => chan(c) && !chan(a),
            };
            Some((n, [a, b, c], channels_last))
        }
        _ => None,
    }
}
