//! CIFAR-10 and CIFAR-100 binary batches, as distributed in `cifar-10-binary.tar.gz` and
//! `cifar-100-binary.tar.gz`.
//!
//! A CIFAR-10 record is 1 label byte followed by 3,072 pixel bytes (1,024 red, then green, then
//! blue, each 32×32 row-major: (C, H, W) order already); a CIFAR-100 record has 2 label bytes,
//! coarse then fine, and the fine label (0..100) is used. Pixels are scaled by 1/255.
//!
//! Which of the two a file holds, unless forced: a length that is a whole number of 3,073-byte
//! records but not of 3,074-byte ones is CIFAR-10, the reverse is CIFAR-100; when it is both,
//! the names `train.bin` and `test.bin` (CIFAR-100's) mean CIFAR-100, any other name CIFAR-10.
//!
//! A folder: `test_batch.bin` if present, else every `data_batch_*.bin` in name order (CIFAR-10);
//! else `test.bin`, else `train.bin` (CIFAR-100).

use std::path::{Path, PathBuf};

use crate::{CifarKind, DatasetError, ImageSet, Result};

/// Pixel bytes per record: 3 × 32 × 32.
pub const PIXELS: usize = 3 * 32 * 32;

impl CifarKind {
    /// Label bytes before the pixels of each record.
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// Bytes per record.
    pub fn record(self) -> usize {
        self.label_bytes() + PIXELS
    }

    /// Number of classes of the (fine) label.
    pub fn classes(self) -> u32 {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }

    /// Decides the format of a batch file from its name and length (see the module docs).
    pub fn detect(name: &str, len: usize) -> CifarKind {
        let fits = |k: CifarKind| len.is_multiple_of(k.record());
        match (fits(CifarKind::Cifar10), fits(CifarKind::Cifar100)) {
            (true, false) => CifarKind::Cifar10,
            (false, true) => CifarKind::Cifar100,
            _ if is_cifar100_name(name) => CifarKind::Cifar100,
            _ => CifarKind::Cifar10,
        }
    }
}

fn is_cifar100_name(name: &str) -> bool {
    name == "train.bin" || name == "test.bin"
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether `dir` holds CIFAR batches under their standard names.
pub fn is_cifar_folder(dir: &Path) -> bool {
    files(dir).is_ok()
}

/// The batch files [`open`] reads for `path` (the file itself, or the batches of a folder).
pub fn files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| DatasetError::Io { path: path.into(), message: e.to_string() })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let pick: Vec<&String> = if names.iter().any(|n| n == "test_batch.bin") {
        names.iter().filter(|n| *n == "test_batch.bin").collect()
    } else if names.iter().any(|n| n.starts_with("data_batch_") && n.ends_with(".bin")) {
        names.iter().filter(|n| n.starts_with("data_batch_") && n.ends_with(".bin")).collect()
    } else if let Some(n) = names.iter().find(|n| *n == "test.bin").or_else(|| names.iter().find(|n| *n == "train.bin"))
    {
        vec![n]
    } else {
        return Err(DatasetError::Format {
            path: path.into(),
            message: "the folder holds no CIFAR batches (test_batch.bin, data_batch_*.bin, test.bin or train.bin)"
                .into(),
        });
    };
    Ok(pick.into_iter().map(|n| path.join(n)).collect())
}

/// Opens a CIFAR batch file, or the batches of a folder (concatenated in order).
pub fn open(path: &Path, kind: Option<CifarKind>) -> Result<ImageSet> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for file in files(path)? {
        let bytes =
            std::fs::read(&file).map_err(|e| DatasetError::Io { path: file.clone(), message: e.to_string() })?;
        let kind = kind.unwrap_or_else(|| CifarKind::detect(&file_name(&file), bytes.len()));
        let (px, lab) = parse(&bytes, kind, &file)?;
        images.extend(px);
        labels.extend(lab);
    }
    ImageSet::new(path.display().to_string(), [3, 32, 32], images, labels)
}

/// Opens CIFAR batches for reading batch by batch: every record's label is read and checked now
/// (a pass over the files in blocks), the pixels when read (see [`crate::stream`]).
pub(crate) fn open_stream(
    path: &Path,
    kind: Option<CifarKind>,
    opts: &crate::OpenOptions,
) -> Result<crate::stream::Records> {
    use std::io::Read;
    let mut labels = Vec::new();
    let mut segments = Vec::new();
    for file in files(path)? {
        let io = |e: std::io::Error| DatasetError::Io { path: file.clone(), message: e.to_string() };
        let len = std::fs::metadata(&file).map_err(io)?.len() as usize;
        let kind = kind.unwrap_or_else(|| CifarKind::detect(&file_name(&file), len));
        let record = kind.record();
        check_len(len, kind, &file)?;
        let mut f = std::io::BufReader::new(std::fs::File::open(&file).map_err(io)?);
        let mut block = vec![0u8; record * 256];
        let mut done = 0;
        while done < len / record {
            let take = (len / record - done).min(256);
            f.read_exact(&mut block[..take * record]).map_err(io)?;
            // Labels only: `parse` checks them; the pixels are dropped.
            let (_, l) = parse(&block[..take * record], kind, &file).map_err(|e| match e {
                DatasetError::Format { path, message } => {
                    DatasetError::Format { path, message: renumber(&message, done) }
                }
                e => e,
            })?;
            labels.extend(l);
            done += take;
        }
        segments.push(crate::stream::Segment {
            path: file.clone(),
            gzip: false,
            offset: 0,
            record,
            skip: kind.label_bytes(),
            count: len / record,
        });
    }
    crate::stream::Records::new(path.display().to_string(), labels, [3, 32, 32], opts, segments)
}

/// A batch is a non-empty whole number of records.
fn check_len(len: usize, kind: CifarKind, path: &Path) -> Result<()> {
    let record = kind.record();
    if len == 0 || !len.is_multiple_of(record) {
        return Err(DatasetError::Format {
            path: path.into(),
            message: format!(
                "a {kind} batch is a whole number of {record}-byte records ({} label byte(s) + {PIXELS} pixels); this file has {len} bytes ({} records and {} bytes over): truncated or not a {kind} batch",
                kind.label_bytes(),
                len / record,
                len % record
            ),
        });
    }
    Ok(())
}

/// A message of `parse` about `record i` of a block, numbered from the file's start.
fn renumber(message: &str, offset: usize) -> String {
    match message.strip_prefix("record ").and_then(|r| r.split_once(' ')) {
        Some((i, rest)) => match i.parse::<usize>() {
            Ok(i) => format!("record {} {rest}", i + offset),
            Err(_) => message.to_string(),
        },
        None => message.to_string(),
    }
}

/// Parses one batch held in memory: pixels in [0, 1] (N × 3 × 32 × 32) and fine labels.
pub fn parse(bytes: &[u8], kind: CifarKind, path: &Path) -> Result<(Vec<f32>, Vec<u32>)> {
    let fmt = |message: String| DatasetError::Format { path: path.into(), message };
    let record = kind.record();
    check_len(bytes.len(), kind, path)?;
    let n = bytes.len() / record;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[kind.label_bytes() - 1] as u32;
        if label >= kind.classes() || (kind == CifarKind::Cifar100 && rec[0] >= 20) {
            return Err(fmt(format!(
                "record {i} has label {} which is out of range for {kind}; is this a {} batch?",
                label,
                if kind == CifarKind::Cifar10 { CifarKind::Cifar100 } else { CifarKind::Cifar10 }
            )));
        }
        labels.push(label);
        images.extend(rec[kind.label_bytes()..].iter().map(|&b| b as f32 / 255.0));
    }
    Ok((images, labels))
}
