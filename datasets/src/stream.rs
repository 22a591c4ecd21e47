//! Streaming [`Source`]s: datasets whose images are decoded only when a batch is read.
//!
//! * Byte records (IDX images, CIFAR batches): labels are read up front; a batch's pixels are
//!   read with a seek into the file, or, for a gzip IDX file, from a forward stream that starts
//!   again from the beginning when an earlier sample is asked for.
//! * Image folders and CSV lists: the (path, label) list up front, each image decoded when read.
//!
//! The images are bit for bit those of the in-memory loaders (`open_with`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::DynamicImage;

use crate::{DatasetError, ImageSet, OpenOptions, Result, Source};

fn io(path: &Path, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Io { path: path.into(), message: e.to_string() }
}

/// One file of fixed-size byte records: `count` records of `record` bytes starting `offset`
/// bytes into the (decompressed) file, each holding `skip` bytes before its pixels.
pub(crate) struct Segment {
    pub path: PathBuf,
    pub gzip: bool,
    pub offset: u64,
    pub record: usize,
    pub skip: usize,
    pub count: usize,
}

/// A forward stream positioned at record `next` of a gzip segment.
struct Cursor {
    segment: usize,
    reader: Box<dyn Read + Send>,
    next: usize,
}

/// Pixels stored as bytes (value/255), (C, H, W) per record, in one or more files.
pub(crate) struct Records {
    source: String,
    labels: Vec<u32>,
    stored: [usize; 3],
    shape: [usize; 3],
    opts: OpenOptions,
    segments: Vec<Segment>,
    cursor: Mutex<Option<Cursor>>,
}

impl Records {
    pub(crate) fn new(
        source: String,
        labels: Vec<u32>,
        stored: [usize; 3],
        opts: &OpenOptions,
        segments: Vec<Segment>,
    ) -> Result<Records> {
        let per: usize = stored.iter().product();
        let (_, shape) = opts.fit(&vec![0.0; per], stored, &source)?;
        Ok(Records { source, labels, stored, shape, opts: *opts, segments, cursor: Mutex::new(None) })
    }

    /// The raw bytes of records `range` of segment `s`.
    fn fetch(&self, s: usize, range: Range<usize>) -> Result<Vec<u8>> {
        let seg = &self.segments[s];
        let mut buf = vec![0u8; range.len() * seg.record];
        let short = |e: std::io::Error| DatasetError::Format {
            path: seg.path.clone(),
            message: format!(
                "cannot read records {}..{} ({e}): the file is truncated or damaged",
                range.start, range.end
            ),
        };
        if !seg.gzip {
            let mut f = File::open(&seg.path).map_err(|e| io(&seg.path, e))?;
            f.seek(SeekFrom::Start(seg.offset + (range.start * seg.record) as u64)).map_err(short)?;
            f.read_exact(&mut buf).map_err(short)?;
            return Ok(buf);
        }
        let mut guard = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let reuse = guard.as_ref().is_some_and(|c| c.segment == s && c.next <= range.start);
        if !reuse {
            let f = File::open(&seg.path).map_err(|e| io(&seg.path, e))?;
            let mut reader: Box<dyn Read + Send> = Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
            std::io::copy(&mut (&mut reader).take(seg.offset), &mut std::io::sink()).map_err(short)?;
            *guard = Some(Cursor { segment: s, reader, next: 0 });
        }
        let c = guard.as_mut().expect("cursor set above");
        let gap = ((range.start - c.next) * seg.record) as u64;
        let skipped = std::io::copy(&mut (&mut c.reader).take(gap), &mut std::io::sink()).map_err(short)?;
        if skipped != gap {
            return Err(short(std::io::ErrorKind::UnexpectedEof.into()));
        }
        c.reader.read_exact(&mut buf).map_err(short)?;
        c.next = range.end;
        Ok(buf)
    }
}

impl Source for Records {
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
        check_range(self, &range)?;
        let per: usize = self.stored.iter().product();
        let mut images = Vec::with_capacity(range.len() * self.shape.iter().product::<usize>());
        let (mut i, mut first) = (range.start, 0);
        for (s, seg) in self.segments.iter().enumerate() {
            let seg_range = first..first + seg.count;
            first += seg.count;
            if i >= range.end {
                break;
            }
            if !seg_range.contains(&i) {
                continue;
            }
            let end = range.end.min(seg_range.end);
            let bytes = self.fetch(s, i - seg_range.start..end - seg_range.start)?;
            for rec in bytes.chunks_exact(seg.record) {
                let pixels: Vec<f32> = rec[seg.skip..seg.skip + per].iter().map(|&b| b as f32 / 255.0).collect();
                if self.opts.resize.is_none() && self.opts.center_crop.is_none() {
                    images.extend(pixels);
                } else {
                    images.extend(self.opts.fit(&pixels, self.stored, &self.source)?.0);
                }
            }
            i = end;
        }
        ImageSet::new(self.source.clone(), self.shape, images, self.labels[range].to_vec())
    }
}

fn check_range(s: &dyn Source, range: &Range<usize>) -> Result<()> {
    if range.start > range.end || range.end > s.len() {
        return Err(DatasetError::Invalid {
            path: s.source().into(),
            message: format!("samples {range:?} are out of range (the dataset has {})", s.len()),
        });
    }
    Ok(())
}

/// Image files with their labels, decoded when read.
pub(crate) struct Files {
    source: String,
    entries: Vec<(PathBuf, u32)>,
    labels: Vec<u32>,
    gray: bool,
    shape: [usize; 3],
    opts: OpenOptions,
}

impl Files {
    /// Reads every file's header (for the colour type: one channel only when every image is
    /// gray, as the in-memory loader decides) and decodes the first image for the shape.
    pub(crate) fn new(source: &Path, entries: Vec<(PathBuf, u32)>, opts: &OpenOptions) -> Result<Files> {
        let mut gray = true;
        for (p, _) in &entries {
            let decoder = image::ImageReader::open(p)
                .map_err(|e| io(p, e))?
                .with_guessed_format()
                .map_err(|e| io(p, e))?
                .into_decoder()
                .map_err(|e| DatasetError::Format {
                    path: p.clone(),
                    message: format!("cannot decode the image ({e})"),
                })?;
            gray &= !image::ImageDecoder::color_type(&decoder).has_color();
        }
        let mut files = Files {
            source: source.display().to_string(),
            labels: entries.iter().map(|(_, l)| *l).collect(),
            entries,
            gray,
            shape: [1, 1, 1],
            opts: *opts,
        };
        if let Some((p, _)) = files.entries.first() {
            files.shape = files.decode(p)?.1;
        }
        Ok(files)
    }

    fn decode(&self, p: &Path) -> Result<(Vec<f32>, [usize; 3])> {
        let img: DynamicImage = crate::folder::decode(p)?;
        let (h, w) = (img.height() as usize, img.width() as usize);
        let (chw, c) = if self.gray {
            (img.to_luma32f().into_raw(), 1)
        } else {
            (crate::to_chw(img.to_rgb32f().into_raw(), 1, [h, w, 3], true).0, 3)
        };
        self.opts.fit(&chw, [c, h, w], &p.display().to_string())
    }
}

impl Source for Files {
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
        check_range(self, &range)?;
        let mut images = Vec::new();
        for (p, _) in &self.entries[range.clone()] {
            let (chw, s) = self.decode(p)?;
            if s != self.shape {
                return Err(DatasetError::Invalid {
                    path: p.clone(),
                    message: format!(
                        "image is {}x{} but {} is {}x{}; give --resize and/or --center-crop to bring every image to one size",
                        s[1],
                        s[2],
                        self.entries[0].0.display(),
                        self.shape[1],
                        self.shape[2]
                    ),
                });
            }
            images.extend(chw);
        }
        ImageSet::new(self.source.clone(), self.shape, images, self.labels[range].to_vec())
    }
}
