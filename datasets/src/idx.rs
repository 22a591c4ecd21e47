//! MNIST-style IDX files (raw or gzip). The labels file is found beside the images file by the
//! standard naming (`…images-idx3-ubyte[.gz]` → `…labels-idx1-ubyte[.gz]`), or both in a folder.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{DatasetError, ImageSet, Result};

/// Opens an IDX images file (finding its labels beside it) or a folder holding the pair.
pub fn open(path: &Path) -> Result<ImageSet> {
    let images = if path.is_dir() { images_in_folder(path)? } else { path.to_path_buf() };
    let labels = labels_beside(&images)?;
    let img = read_maybe_gz(&images)?;
    let lab = read_maybe_gz(&labels)?;
    from_bytes(&img, &lab, &images, &labels)
}

/// Opens an IDX pair for reading batch by batch: the labels and the images' header now, the
/// pixels when read (see [`crate::stream`]). Refuses what [`open`] refuses, except that a gzip
/// images file whose data ends early is found when that part is read.
pub(crate) fn open_stream(path: &Path, opts: &crate::OpenOptions) -> Result<crate::stream::Records> {
    let images = if path.is_dir() { images_in_folder(path)? } else { path.to_path_buf() };
    let labels_path = labels_beside(&images)?;
    let lab = gunzip_if_needed(&read_maybe_gz(&labels_path)?, &labels_path)?;
    let (ldims, lval) = parse(&lab, &labels_path)?;
    // The images header: magic, element type, dimensions.
    let fmt = |message: String| DatasetError::Format { path: images.clone(), message };
    let file =
        std::fs::File::open(&images).map_err(|e| DatasetError::Io { path: images.clone(), message: e.to_string() })?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut magic = [0u8; 2];
    let gzip = std::io::BufReader::new(&file).read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file =
        std::fs::File::open(&images).map_err(|e| DatasetError::Io { path: images.clone(), message: e.to_string() })?;
    let mut reader: Box<dyn Read> = if gzip { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    let mut head = [0u8; 4];
    reader.read_exact(&mut head).map_err(|e| {
        if gzip {
            fmt(format!("corrupt gzip data, or no IDX header in it ({e})"))
        } else {
            fmt("not an IDX file (bad magic number)".into())
        }
    })?;
    if head[0] != 0 || head[1] != 0 {
        return Err(fmt("not an IDX file (bad magic number)".into()));
    }
    if head[2] != 0x08 {
        return Err(fmt(format!("IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)", head[2])));
    }
    let nd = head[3] as usize;
    let mut raw_dims = vec![0u8; 4 * nd];
    if nd == 0 {
        return Err(fmt("truncated IDX header".into()));
    }
    if let Err(e) = reader.read_exact(&mut raw_dims) {
        return Err(fmt(if gzip {
            format!("corrupt gzip data, or a truncated IDX header in it ({e})")
        } else {
            "truncated IDX header".into()
        }));
    }
    let dims: Vec<usize> =
        raw_dims.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected =
        dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64).filter(|&t| t <= MAX_BYTES)).ok_or_else(
            || fmt(format!("the header's dimensions {dims:?} claim more than the limit of {MAX_BYTES} bytes")),
        )?;
    let header = (4 + 4 * nd) as u64;
    if !gzip && file_len - header != expected {
        return Err(fmt(format!(
            "the header promises {expected} bytes of data for dimensions {dims:?}, the file has {}",
            file_len - header
        )));
    }
    let (n, h, w) = match dims.as_slice() {
        [n, h, w] => (*n, *h, *w),
        [n, h, w, 1] => (*n, *h, *w),
        d => {
            return Err(fmt(format!("an images file has 3 dimensions (N, H, W), this one has {}", d.len())));
        }
    };
    let lfmt = |message: String| DatasetError::Format { path: labels_path.clone(), message };
    if ldims.len() != 1 {
        return Err(lfmt(format!("a labels file has 1 dimension, this one has {}", ldims.len())));
    }
    if ldims[0] != n {
        return Err(lfmt(format!("{} labels for {n} images in {}", ldims[0], images.display())));
    }
    let segment =
        crate::stream::Segment { path: images.clone(), gzip, offset: header, record: h * w, skip: 0, count: n };
    crate::stream::Records::new(
        images.display().to_string(),
        lval.iter().map(|&b| b as u32).collect(),
        [1, h, w],
        opts,
        vec![segment],
    )
}

/// The images and labels files `open` reads for `path`.
pub fn files(path: &Path) -> Result<Vec<PathBuf>> {
    let images = if path.is_dir() { images_in_folder(path)? } else { path.to_path_buf() };
    let labels = labels_beside(&images)?;
    Ok(vec![images, labels])
}

/// Parses an IDX images/labels pair held in memory (uncompressed or gzip).
pub fn from_bytes(images: &[u8], labels: &[u8], images_path: &Path, labels_path: &Path) -> Result<ImageSet> {
    let images = gunzip_if_needed(images, images_path)?;
    let labels = gunzip_if_needed(labels, labels_path)?;
    let (idims, ipix) = parse(&images, images_path)?;
    let (ldims, lval) = parse(&labels, labels_path)?;
    let fmt = |path: &Path, message: String| DatasetError::Format { path: path.into(), message };
    let (n, h, w) = match idims.as_slice() {
        [n, h, w] => (*n, *h, *w),
        [n, h, w, 1] => (*n, *h, *w),
        d => {
            return Err(fmt(
                images_path,
                format!("an images file has 3 dimensions (N, H, W), this one has {}", d.len()),
            ))
        }
    };
    if ldims.len() != 1 {
        return Err(fmt(labels_path, format!("a labels file has 1 dimension, this one has {}", ldims.len())));
    }
    if ldims[0] != n {
        return Err(fmt(labels_path, format!("{} labels for {n} images in {}", ldims[0], images_path.display())));
    }
    let pixels = ipix.iter().map(|&b| b as f32 / 255.0).collect();
    let label_values = lval.iter().map(|&b| b as u32).collect();
    ImageSet::new(images_path.display().to_string(), [1, h, w], pixels, label_values)
}

/// Whether `dir` holds an `*images-idx3-ubyte[.gz]` file.
pub fn is_idx_folder(dir: &Path) -> bool {
    idx_image_files(dir).is_ok_and(|f| !f.is_empty())
}

fn idx_image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::Io { path: dir.into(), message: e.to_string() })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("images-idx3-ubyte")))
        .collect();
    found.sort();
    Ok(found)
}

fn images_in_folder(dir: &Path) -> Result<PathBuf> {
    let mut found = idx_image_files(dir)?;
    // Prefer the test split: robustness is measured on held-out data.
    if let Some(t) = found.iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("t10k"))) {
        return Ok(t.clone());
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DatasetError::Format {
            path: dir.into(),
            message: "the folder holds no `*images-idx3-ubyte[.gz]` file; point --dataset at a dataset file".into(),
        }),
        _ => Err(DatasetError::Format {
            path: dir.into(),
            message: "the folder holds several IDX image files; point --dataset at one of them".into(),
        }),
    }
}

fn labels_beside(images: &Path) -> Result<PathBuf> {
    let name = images.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(pos) = name.find("images-idx3-ubyte") else {
        return Err(DatasetError::Format {
            path: images.into(),
            message:
                "an IDX images file is named `…images-idx3-ubyte[.gz]` so that its labels file can be found beside it"
                    .into(),
        });
    };
    let stem = &name[..pos];
    let dir = images.parent().unwrap_or(Path::new(""));
    for ext in ["", ".gz"] {
        let p = dir.join(format!("{stem}labels-idx1-ubyte{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DatasetError::Io {
        path: images.into(),
        message: format!("no labels file `{stem}labels-idx1-ubyte[.gz]` beside the images"),
    })
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DatasetError::Io { path: path.into(), message: e.to_string() })
}

fn gunzip_if_needed(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| DatasetError::Format { path: path.into(), message: format!("corrupt gzip data ({e})") })?;
        if out.len() as u64 > MAX_BYTES {
            return Err(DatasetError::Format {
                path: path.into(),
                message: format!("the gzip data unpacks to more than the limit of {MAX_BYTES} bytes"),
            });
        }
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// The most bytes an IDX file may hold once unpacked (4 GiB); a header or gzip stream that claims
/// more is refused before it is allocated.
pub const MAX_BYTES: u64 = 4 << 30;

/// Parses an unsigned-byte IDX file: returns its dimensions and payload.
fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<(Vec<usize>, &'a [u8])> {
    let fmt = |message: String| DatasetError::Format { path: path.into(), message };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(fmt("not an IDX file (bad magic number)".into()));
    }
    if bytes[2] != 0x08 {
        return Err(fmt(format!("IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)", bytes[2])));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if nd == 0 || bytes.len() < header {
        return Err(fmt("truncated IDX header".into()));
    }
    let dims: Vec<usize> =
        (0..nd).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let expected =
        dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64).filter(|&t| t <= MAX_BYTES)).ok_or_else(
            || fmt(format!("the header's dimensions {dims:?} claim more than the limit of {MAX_BYTES} bytes")),
        )?;
    let payload = &bytes[header..];
    if payload.len() as u64 != expected {
        return Err(fmt(format!(
            "the header promises {expected} bytes of data for dimensions {dims:?}, the file has {}",
            payload.len()
        )));
    }
    Ok((dims, payload))
}
