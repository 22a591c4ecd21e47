//! NumPy `.npz` (arrays `images` and `labels`) and `.npy` (an images file with a labels file
//! beside it: `…images….npy` → `…labels….npy`). Images N×C×H×W or N×H×W×C (or N×H×W), uint8
//! (scaled by 1/255) or float in [0, 1]; labels any integer type.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{NpzReader, ReadNpyExt, ReadableElement};

use crate::{layout, to_chw, DataLayout, DatasetError, ImageSet, Result};

/// Where one array lives: a member of an .npz archive, or a whole .npy file.
enum Source<'a> {
    Npz(&'a [u8], &'static str),
    Npy(&'a [u8]),
}

impl Source<'_> {
    fn read<T: ReadableElement>(&self) -> std::result::Result<ArrayD<T>, String> {
        match self {
            Source::Npz(bytes, name) => NpzReader::new(Cursor::new(*bytes))
                .and_then(|mut z| z.by_name::<ndarray::OwnedRepr<T>, IxDyn>(name))
                .map_err(|e| e.to_string()),
            Source::Npy(bytes) => ArrayD::<T>::read_npy(Cursor::new(*bytes)).map_err(|e| e.to_string()),
        }
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
    let bytes = std::fs::read(path).map_err(|e| DatasetError::Io { path: path.into(), message: e.to_string() })?;
    let fmt = |message: String| DatasetError::Format { path: path.into(), message };
    let names = NpzReader::new(Cursor::new(&bytes))
        .and_then(|mut z| z.names())
        .map_err(|e| fmt(format!("not a readable .npz archive ({e})")))?;
    for want in ["images", "labels"] {
        if !names.iter().any(|n| n == want) {
            return Err(fmt(format!(
                "the archive has no `{want}` array (it has: {}); save with np.savez(path, images=..., labels=...)",
                names.join(", ")
            )));
        }
    }
    let images = Source::Npz(&bytes, "images").images(path)?;
    let labels = Source::Npz(&bytes, "labels").labels(path)?;
    assemble(path, images, labels, layout)
}

/// The labels file beside an images `.npy` file: the first `images` in the name becomes `labels`.
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
    let images = Source::Npy(&img).images(path)?;
    let labels = Source::Npy(&lab).labels(&labels_path)?;
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
