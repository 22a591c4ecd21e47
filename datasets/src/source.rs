//! Datasets read batch by batch: a [`Source`] knows its labels and image shape up front and
//! decodes images only when asked, so that an evaluation holds one batch of images at a time
//! whatever the size of the dataset.

use std::ops::Range;
use std::path::Path;

use crate::{DatasetError, ImageSet, OpenOptions, Result};

/// Samples decoded per read when a source is scanned (validation, [`Source::select`]).
pub const SCAN_BLOCK: usize = 256;

/// A labelled dataset whose images are decoded on demand.
///
/// Labels are held in memory (4 bytes a sample); images are not. Reads may come in any order;
/// sources that can only read forwards (gzip streams, deflated archive entries) start again from
/// the beginning when asked for an earlier sample, so reading in ascending order is the fast path.
pub trait Source: Send + Sync {
    /// Where it came from, for messages and reports.
    fn source(&self) -> &str;
    /// Image shape (C, H, W), after any resize and crop.
    fn shape(&self) -> [usize; 3];
    /// Every label, in sample order.
    fn labels(&self) -> &[u32];
    /// Decodes the samples `range` (within `0..len()`), in order.
    fn read(&self, range: Range<usize>) -> Result<ImageSet>;

    fn len(&self) -> usize {
        self.labels().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn per_image(&self) -> usize {
        self.shape().iter().product()
    }

    /// The samples `idx`, in that order, reading in ascending order and keeping only those asked for.
    fn select(&self, idx: &[usize]) -> Result<ImageSet> {
        let per = self.per_image();
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.len()) {
            return Err(DatasetError::Invalid {
                path: self.source().into(),
                message: format!("sample {bad} is out of range (the dataset has {})", self.len()),
            });
        }
        let mut order: Vec<usize> = idx.to_vec();
        order.sort_unstable();
        order.dedup();
        let mut rows: Vec<(usize, Vec<f32>)> = Vec::with_capacity(order.len());
        let mut k = 0;
        while k < order.len() {
            let start = order[k];
            let end = (start + SCAN_BLOCK).min(self.len());
            let block = self.read(start..end)?;
            while k < order.len() && order[k] < end {
                rows.push((order[k], block.image(order[k] - start).to_vec()));
                k += 1;
            }
        }
        let mut images = Vec::with_capacity(idx.len() * per);
        for i in idx {
            let r = rows.binary_search_by_key(i, |(j, _)| *j).expect("every index was read");
            images.extend_from_slice(&rows[r].1);
        }
        ImageSet::new(self.source(), self.shape(), images, idx.iter().map(|&i| self.labels()[i]).collect())
    }

    /// Checks the whole dataset against what a model expects (see [`ImageSet::validate`]),
    /// decoding it block by block.
    fn validate(&self, shape: [usize; 3], classes: usize) -> Result<()> {
        let labels_only = ImageSet {
            source: self.source().to_string(),
            shape: self.shape(),
            images: Vec::new(),
            labels: self.labels().to_vec(),
        };
        labels_only.validate_labels(shape, classes)?;
        let mut start = 0;
        while start < self.len() {
            let end = (start + SCAN_BLOCK).min(self.len());
            self.read(start..end)?.validate_pixels(start)?;
            start = end;
        }
        Ok(())
    }
}

impl Source for ImageSet {
    fn source(&self) -> &str {
        &self.source
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn labels(&self) -> &[u32] {
        &self.labels
    }
    fn read(&self, range: Range<usize>) -> Result<ImageSet> {
        if range.start > range.end || range.end > self.labels.len() {
            return Err(DatasetError::Invalid {
                path: self.source.clone().into(),
                message: format!("samples {range:?} are out of range (the dataset has {})", self.labels.len()),
            });
        }
        let per = self.per_image();
        Ok(ImageSet {
            source: self.source.clone(),
            shape: self.shape,
            images: self.images[range.start * per..range.end * per].to_vec(),
            labels: self.labels[range].to_vec(),
        })
    }
}

/// The first `n` samples of another source.
pub struct Limited<S> {
    inner: S,
    n: usize,
}

impl<S: Source> Limited<S> {
    pub fn new(inner: S, n: usize) -> Self {
        let n = n.min(inner.len());
        Limited { inner, n }
    }
}

impl<S: Source> Source for Limited<S> {
    fn source(&self) -> &str {
        self.inner.source()
    }
    fn shape(&self) -> [usize; 3] {
        self.inner.shape()
    }
    fn labels(&self) -> &[u32] {
        &self.inner.labels()[..self.n]
    }
    fn read(&self, range: Range<usize>) -> Result<ImageSet> {
        if range.end > self.n {
            return Err(DatasetError::Invalid {
                path: self.source().into(),
                message: format!("samples {range:?} are out of range (the dataset has {})", self.n),
            });
        }
        self.inner.read(range)
    }
}

impl Source for Box<dyn Source> {
    fn source(&self) -> &str {
        self.as_ref().source()
    }
    fn shape(&self) -> [usize; 3] {
        self.as_ref().shape()
    }
    fn labels(&self) -> &[u32] {
        self.as_ref().labels()
    }
    fn read(&self, range: Range<usize>) -> Result<ImageSet> {
        self.as_ref().read(range)
    }
}

/// Opens a dataset for reading batch by batch, with the options of [`crate::open_with`]: the same
/// images, decoded on demand. IDX (raw or gzip), CIFAR batches, image folders and CSV lists
/// stream; NPY, NPZ and safetensors arrays are read whole (in their stored type, converted to
/// f32 once) and served from memory.
pub fn open_source(path: &Path, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    use crate::Format;
    Ok(match crate::format_of(path)? {
        Format::Idx => Box::new(crate::idx::open_stream(path, opts)?),
        Format::Cifar => Box::new(crate::cifar::open_stream(path, opts.cifar, opts)?),
        Format::ImageFolder => Box::new(crate::stream::Files::new(path, crate::folder::entries(path, false)?, opts)?),
        Format::Csv => Box::new(crate::stream::Files::new(path, crate::folder::entries(path, true)?, opts)?),
        Format::Npz | Format::Npy | Format::Safetensors => Box::new(crate::open_with(path, opts)?),
    })
}
