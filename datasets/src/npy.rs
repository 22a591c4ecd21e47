//! NumPy `.npz` (arrays `images` and `labels`) and `.npy` (an images file with a labels file
//! beside it: `…images….npy` → `…labels….npy`). Images N×C×H×W or N×H×W×C (or N×H×W), uint8
//! (scaled by 1/255) or float in [0, 1]; labels any integer type.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, ReadableElement};

use crate::{layout, to_chw, DataLayout, DatasetError, ImageSet, Result};

/// Where one array lives: a member of an .npz archive, or a whole .npy file.
/// One `.npy` array in memory, its header checked against its size.
struct Source<'a>(&'a [u8]);

impl Source<'_> {
    fn read<T: ReadableElement>(&self) -> std::result::Result<ArrayD<T>, String> {
        ArrayD::<T>::read_npy(Cursor::new(self.0)).map_err(|e| e.to_string())
    }

    /// Images as floats plus dims: uint8 is scaled by 1/255, floats are taken as they are.
    fn images(&self, path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
        if let Ok(a) = self.read::<u8>() {
            return Ok((a.iter().map(|&v| v as f32 / 255.0).collect(), a.shape().to_vec()));
        }
        if let Ok(a) = self.read::<f32>() {
            return Ok((a.iter().copied().collect(), a.shape().to_vec()));
        }
        match self.read::<f64>() {
            Ok(a) => Ok((a.iter().map(|&v| v as f32).collect(), a.shape().to_vec())),
            Err(e) => Err(DatasetError::Format {
                path: path.into(),
                message: format!("images must be a uint8, float32 or float64 array ({e})"),
            }),
        }
    }

    fn labels(&self, path: &Path) -> Result<Vec<u32>> {
        let bad = |message: String| DatasetError::Format { path: path.into(), message };
        let from_i64 = |v: Vec<i64>| -> Result<Vec<u32>> {
            v.iter().map(|&l| u32::try_from(l).map_err(|_| bad(format!("label {l} is not a class index")))).collect()
        };
        macro_rules! attempt {
            ($($t:ty),*) => {$(
                if let Ok(a) = self.read::<$t>() {
                    if a.ndim() != 1 {
                        return Err(bad(format!("labels must be a 1-D array, this one has shape {:?}", a.shape())));
                    }
                    return from_i64(a.iter().map(|&v| v as i64).collect());
                }
            )*};
        }
        attempt!(i64, i32, u8, u32, u16, i16, i8, u64);
        Err(bad("labels must be an integer array".into()))
    }
}

/// Opens an `.npz` archive with arrays `images` and `labels`; 4-D images are read as `layout` says.
pub fn open_npz(path: &Path, layout: DataLayout) -> Result<ImageSet> {
    let fmt = |message: String| DatasetError::Format { path: path.into(), message };
    let file = std::fs::File::open(path).map_err(|e| DatasetError::Io { path: path.into(), message: e.to_string() })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fmt(format!("not a readable .npz archive ({e})")))?;
    let names: Vec<String> = zip.file_names().map(|n| n.trim_end_matches(".npy").to_string()).collect();
    let mut entry = |want: &str| -> Result<Vec<u8>> {
        if !names.iter().any(|n| n == want) {
            return Err(fmt(format!(
                "the archive has no `{want}` array (it has: {}); save with np.savez(path, images=..., labels=...)",
                names.join(", ")
            )));
        }
        let f = zip.by_name(&format!("{want}.npy")).map_err(|e| fmt(format!("`{want}`: {e}")))?;
        if f.size() > MAX_ARRAY_BYTES {
            return Err(fmt(format!("`{want}` claims {} bytes, more than the limit of {MAX_ARRAY_BYTES}", f.size())));
        }
        let mut bytes = Vec::new();
        f.take(MAX_ARRAY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fmt(format!("`{want}` cannot be read from the archive ({e})")))?;
        check_header(&bytes).map_err(|m| fmt(format!("`{want}`: {m}")))?;
        Ok(bytes)
    };
    let (img, lab) = (entry("images")?, entry("labels")?);
    let images = Source(&img).images(path)?;
    let labels = Source(&lab).labels(path)?;
    assemble(path, images, labels, layout)
}

/// The most bytes one array may hold (4 GiB): an archive entry or a header that claims more is
/// refused before anything is allocated.
pub const MAX_ARRAY_BYTES: u64 = 4 << 30;

/// Checks a `.npy` header's shape and element size against the bytes that follow it.
fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic string)".into());
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(format!(".npy format version {v} is not supported")),
    };
    let header = bytes.get(start..start.saturating_add(len)).ok_or("truncated .npy header")?;
    let header = String::from_utf8_lossy(header);
    let field =
        |key: &str| header.split(key).nth(1).map(|rest| rest.trim_start_matches([':', ' ', '\'', '"']).to_string());
    let descr = field("descr").ok_or("the .npy header has no descr")?;
    let item: u64 = descr.chars().skip(1).take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(1);
    let shape = field("shape").ok_or("the .npy header has no shape")?;
    let shape = shape.trim_start_matches('(');
    let shape = &shape[..shape.find(')').ok_or("the .npy header's shape is not closed")?];
    let mut total = item;
    for d in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: u64 = d.parse().map_err(|_| format!("the .npy shape ({shape}) is not a list of sizes"))?;
        total = total.checked_mul(d).filter(|&t| t <= MAX_ARRAY_BYTES).ok_or_else(|| {
            format!("the .npy header's shape ({shape}) claims more than the limit of {MAX_ARRAY_BYTES} bytes")
        })?;
    }
    let have = (bytes.len() - (start + len)) as u64;
    if have < total {
        return Err(format!("the header promises {total} bytes of data for shape ({shape}), the file holds {have}"));
    }
    Ok(())
}

pub fn labels_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !name.contains("images") {
        return Err(DatasetError::Format {
            path: path.into(),
            message:
                "a .npy dataset is an `…images….npy` file with its `…labels….npy` beside it; or use one .npz with both"
                    .into(),
        });
    }
    Ok(path.with_file_name(name.replacen("images", "labels", 1)))
}

/// Opens an images `.npy` file and the labels `.npy` beside it; 4-D images are read as `layout` says.
pub fn open_npy(path: &Path, layout: DataLayout) -> Result<ImageSet> {
    let labels_path = labels_path(path)?;
    let img = std::fs::read(path).map_err(|e| DatasetError::Io { path: path.into(), message: e.to_string() })?;
    let lab = std::fs::read(&labels_path).map_err(|e| DatasetError::Io {
        path: labels_path.clone(),
        message: format!("cannot read the labels beside the images ({e})"),
    })?;
    check_header(&img).map_err(|message| DatasetError::Format { path: path.into(), message })?;
    check_header(&lab).map_err(|message| DatasetError::Format { path: labels_path.clone(), message })?;
    let images = Source(&img).images(path)?;
    let labels = Source(&lab).labels(&labels_path)?;
    assemble(path, images, labels, layout)
}

/// Builds an image set from a flat array of any supported layout.
pub(crate) fn assemble(
    path: &Path,
    (values, dims): (Vec<f32>, Vec<usize>),
    labels: Vec<u32>,
    order: DataLayout,
) -> Result<ImageSet> {
    let Some((n, d, channels_last)) = layout(&dims, order) else {
        return Err(DatasetError::Format {
            path: path.into(),
            message: format!("images have shape {dims:?}; expected N×C×H×W, N×H×W×C or N×H×W"),
        });
    };
    if n != labels.len() {
        return Err(DatasetError::Format {
            path: path.into(),
            message: format!("{} labels for {n} images", labels.len()),
        });
    }
    let (values, shape) = to_chw(values, n, d, channels_last);
    ImageSet::new(path.display().to_string(), shape, values, labels)
}
