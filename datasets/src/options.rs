//! How to read a dataset: resizing and cropping to the model's size, the layout of stored
//! arrays, and the CIFAR variant. Resize and crop act in pixel space on every format, before the
//! model (and its own preprocessing) sees the images.

use std::fmt;
use std::str::FromStr;

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma};

use crate::{DatasetError, Result};

/// The filter every resize uses: bilinear (`image`'s `Triangle`), which, like PIL's and
/// torchvision's antialiased bilinear, widens its support when shrinking.
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

/// Options of [`crate::open_with`]; the default reads every format as [`crate::open`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Resize every image (first).
    pub resize: Option<Resize>,
    /// Then cut the central (H, W) window out of every image.
    pub center_crop: Option<[usize; 2]>,
    /// Axis order of 4-D arrays in NPY/NPZ/safetensors files.
    pub layout: DataLayout,
    /// CIFAR binary batches: force CIFAR-10 or CIFAR-100 instead of deciding from the file.
    pub cifar: Option<CifarKind>,
}

impl OpenOptions {
    /// Whether the options change nothing about how images are read.
    pub fn is_default(&self) -> bool {
        *self == OpenOptions::default()
    }

    /// One line for reports, e.g. `resize 256, center-crop 224x224`; `none` for the defaults.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.resize {
            parts.push(format!("resize {r}"));
        }
        if let Some([h, w]) = self.center_crop {
            parts.push(format!("center-crop {h}x{w}"));
        }
        if self.layout != DataLayout::Auto {
            parts.push(format!("data-layout {}", self.layout));
        }
        if let Some(k) = self.cifar {
            parts.push(format!("{k}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// Applies resize then center crop to one (C, H, W) image; returns the new image and shape.
    pub fn fit(&self, image: &[f32], shape: [usize; 3], source: &str) -> Result<(Vec<f32>, [usize; 3])> {
        let mut image = image.to_vec();
        let mut shape = shape;
        if let Some(r) = self.resize {
            let [h, w] = r.target(shape[1], shape[2]);
            if [h, w] != [shape[1], shape[2]] {
                image = resize_chw(&image, shape, [h, w]);
                shape = [shape[0], h, w];
            }
        }
        if let Some(crop) = self.center_crop {
            image = center_crop_chw(&image, shape, crop).ok_or_else(|| DatasetError::Invalid {
                path: source.into(),
                message: format!(
                    "--center-crop {}x{} is larger than the image ({}x{}); resize first with --resize",
                    crop[0], crop[1], shape[1], shape[2]
                ),
            })?;
            shape = [shape[0], crop[0], crop[1]];
        }
        Ok((image, shape))
    }
}

/// A resize: to exactly (H, W), or the shorter side to N keeping the aspect ratio (the longer
/// side becomes `floor(N · long / short)`, as torchvision's `Resize(N)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    Exact([usize; 2]),
    ShorterSide(usize),
}

impl Resize {
    /// The (H, W) an image of (h, w) is resized to.
    pub fn target(self, h: usize, w: usize) -> [usize; 2] {
        match self {
            Resize::Exact(hw) => hw,
            Resize::ShorterSide(n) if h <= w => [n, (n * w / h).max(1)],
            Resize::ShorterSide(n) => [(n * h / w).max(1), n],
        }
    }
}

impl fmt::Display for Resize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resize::Exact([h, w]) => write!(f, "{h}x{w}"),
            Resize::ShorterSide(n) => write!(f, "{n} (shorter side)"),
        }
    }
}

impl FromStr for Resize {
    type Err = DatasetError;
    /// `N` (shorter side) or `H,W`.
    fn from_str(s: &str) -> Result<Self> {
        match parse_sizes(s, "--resize")?.as_slice() {
            [n] => Ok(Resize::ShorterSide(*n)),
            [h, w] => Ok(Resize::Exact([*h, *w])),
            _ => unreachable!(),
        }
    }
}

/// Parses `--center-crop`: `N` (a square) or `H,W`.
pub fn parse_crop(s: &str) -> Result<[usize; 2]> {
    match parse_sizes(s, "--center-crop")?.as_slice() {
        [n] => Ok([*n, *n]),
        [h, w] => Ok([*h, *w]),
        _ => unreachable!(),
    }
}

/// One or two positive integers, comma-separated.
fn parse_sizes(s: &str, flag: &str) -> Result<Vec<usize>> {
    let bad =
        || DatasetError::Options(format!("{flag} {s}: give N or H,W with positive integers (e.g. 224 or 224,224)"));
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err(bad());
    }
    let values = parts.iter().map(|p| p.parse::<usize>().ok().filter(|&v| v > 0)).collect::<Option<Vec<_>>>();
    values.ok_or_else(bad)
}

/// Axis order of stored 4-D image arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataLayout {
    /// NHWC when only the last axis is a plausible channel count (1, 3 or 4), else NCHW.
    #[default]
    Auto,
    Nchw,
    Nhwc,
}

impl fmt::Display for DataLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataLayout::Auto => "auto",
            DataLayout::Nchw => "nchw",
            DataLayout::Nhwc => "nhwc",
        })
    }
}

impl FromStr for DataLayout {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DataLayout::Auto),
            "nchw" => Ok(DataLayout::Nchw),
            "nhwc" => Ok(DataLayout::Nhwc),
            _ => Err(DatasetError::Options(format!("--data-layout {s}: use auto, nchw or nhwc"))),
        }
    }
}

/// Which CIFAR binary format a batch file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// 1 label byte + 3,072 pixel bytes per record.
    Cifar10,
    /// 2 label bytes (coarse, fine) + 3,072 pixel bytes per record; the fine label is used.
    Cifar100,
}

impl fmt::Display for CifarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CifarKind::Cifar10 => "cifar-10",
            CifarKind::Cifar100 => "cifar-100",
        })
    }
}

/// Resizes every channel plane of a (C, H, W) image with [`RESIZE_FILTER`].
pub fn resize_chw(image: &[f32], [c, h, w]: [usize; 3], [nh, nw]: [usize; 2]) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * nh * nw);
    for plane in image.chunks_exact(h * w) {
        let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(w as u32, h as u32, plane.to_vec()).expect("plane has h·w values");
        let resized = imageops::resize(&buf, nw as u32, nh as u32, RESIZE_FILTER);
        out.extend(resized.into_raw().into_iter().map(|v| v.clamp(0.0, 1.0)));
    }
    out
}

/// The central (H, W) window of a (C, H, W) image, placed as torchvision's `CenterCrop` places it
/// (offset `round((h − H) / 2)`, halves to even); `None` if the window is larger than the image.
pub fn center_crop_chw(image: &[f32], [c, h, w]: [usize; 3], [ch, cw]: [usize; 2]) -> Option<Vec<f32>> {
    if ch > h || cw > w {
        return None;
    }
    let offset = |d: usize| {
        let q = d / 2;
        if d % 2 == 1 && q % 2 == 1 {
            q + 1
        } else {
            q
        }
    };
    let (top, left) = (offset(h - ch), offset(w - cw));
    let mut out = Vec::with_capacity(c * ch * cw);
    for k in 0..c {
        for y in top..top + ch {
            let row = (k * h + y) * w;
            out.extend_from_slice(&image[row + left..row + left + cw]);
        }
    }
    Some(out)
}
