//! Image files: a class-per-folder tree (`root/<class>/<image>`, as torchvision's `ImageFolder`)
//! or a CSV of `path,label` lines.
//!
//! Class labels of a tree are the indices of the class folders' names in sorted (byte) order,
//! unless the root holds a `classes.txt` with one class name per line: then a label is the
//! index of its folder's name in that list (so a subset of the classes keeps the full set's
//! indices, and the list may name classes without a folder). The images of a class are read in
//! sorted name order. Files with other extensions than the
//! [`EXTENSIONS`] and names starting with `.` are skipped; a class folder without images is an
//! error (its index would silently shift the others otherwise).
//!
//! A CSV has one `path,label` line per image (a first line whose label is not an integer is a
//! header); paths are relative to the CSV's folder; blank lines are skipped. The path is
//! everything before the last comma, so it may itself contain commas.
//!
//! Colour: if every image is stored as grayscale (with or without alpha) the set has 1 channel;
//! otherwise every image is converted to RGB (3 channels). Alpha is dropped. 8-bit values are
//! scaled by 1/255, 16-bit by 1/65535. Images of different sizes need `--resize`/`--center-crop`
//! to a common size.

use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::{DatasetError, ImageSet, OpenOptions, Result};

/// File extensions read as images (compared case-insensitively).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp"];

fn io(path: &Path, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Io { path: path.into(), message: e.to_string() }
}

fn is_image(path: &Path) -> bool {
    let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    !hidden && path.is_file() && EXTENSIONS.contains(&ext.as_str())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

/// The file in a tree's root that fixes the class order.
pub const CLASSES_FILE: &str = "classes.txt";

/// The class folders of a tree, sorted by name.
fn class_folders(root: &Path) -> Result<Vec<String>> {
    Ok(sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
        .collect())
}

/// The class names of a class-per-folder tree; index = label. From `classes.txt` when the root
/// has one, else the subfolder names sorted.
pub fn classes(root: &Path) -> Result<Vec<String>> {
    let list = root.join(CLASSES_FILE);
    if !list.is_file() {
        return class_folders(root);
    }
    let text = std::fs::read_to_string(&list).map_err(|e| io(&list, e))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    for folder in class_folders(root)? {
        if !names.contains(&folder) {
            return Err(DatasetError::Format {
                path: list,
                message: format!("the class folder `{folder}` is not listed; add it or remove the folder"),
            });
        }
    }
    Ok(names)
}

/// Whether `dir` looks like a class-per-folder tree (it has a subfolder).
pub fn is_image_folder(dir: &Path) -> bool {
    class_folders(dir).is_ok_and(|c| !c.is_empty())
}

/// Every image of a class-per-folder tree with its label, in reading order.
pub fn tree_entries(root: &Path) -> Result<Vec<(PathBuf, u32)>> {
    let names = classes(root)?;
    if names.is_empty() {
        return Err(DatasetError::Format {
            path: root.into(),
            message: "an image folder holds one subfolder per class (root/<class>/<image>.png); this one has none"
                .into(),
        });
    }
    let listed = root.join(CLASSES_FILE).is_file();
    let mut out = Vec::new();
    for (label, name) in names.iter().enumerate() {
        let dir = root.join(name);
        if listed && !dir.is_dir() {
            continue;
        }
        let files: Vec<PathBuf> = sorted_entries(&dir)?.into_iter().filter(|p| is_image(p)).collect();
        if files.is_empty() {
            return Err(DatasetError::Format {
                path: dir,
                message: format!(
                    "the class folder holds no images ({}); remove it or add images",
                    EXTENSIONS.join(", ")
                ),
            });
        }
        out.extend(files.into_iter().map(|f| (f, label as u32)));
    }
    if out.is_empty() {
        return Err(DatasetError::Format {
            path: root.into(),
            message: format!("no folder of a class listed in {CLASSES_FILE} exists"),
        });
    }
    Ok(out)
}

/// Every image listed by a `path,label` CSV with its label, in file order.
pub fn csv_entries(csv: &Path) -> Result<Vec<(PathBuf, u32)>> {
    let text = std::fs::read_to_string(csv).map_err(|e| io(csv, e))?;
    let base = csv.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad =
            |message: String| DatasetError::Format { path: csv.into(), message: format!("line {}: {message}", i + 1) };
        let Some((path, label)) = line.rsplit_once(',') else {
            return Err(bad(format!("`{line}` is not `path,label`")));
        };
        let unquote = |s: &str| s.trim().trim_matches('"').to_string();
        let (path, label) = (unquote(path), unquote(label));
        let label = match label.parse::<u32>() {
            Ok(l) => l,
            Err(_) if out.is_empty() && i == first_line(&text) => continue,
            Err(_) => return Err(bad(format!("label `{label}` is not a class index (a non-negative integer)"))),
        };
        if path.is_empty() {
            return Err(bad("the path is empty".into()));
        }
        out.push((base.join(path), label));
    }
    if out.is_empty() {
        return Err(DatasetError::Format {
            path: csv.into(),
            message: "the CSV lists no images (`path,label` lines)".into(),
        });
    }
    Ok(out)
}

/// Index of the first non-blank line (the only one that may be a header).
fn first_line(text: &str) -> usize {
    text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0)
}

/// Opens a class-per-folder tree.
pub fn open_tree(root: &Path, opts: &OpenOptions) -> Result<ImageSet> {
    load(root, &tree_entries(root)?, opts)
}

/// Opens the images a CSV lists.
pub fn open_csv(csv: &Path, opts: &OpenOptions) -> Result<ImageSet> {
    let entries = csv_entries(csv)?;
    for (p, _) in &entries {
        if !p.is_file() {
            return Err(DatasetError::Io {
                path: p.clone(),
                message: format!("listed in {} but not found", csv.display()),
            });
        }
    }
    load(csv, &entries, opts)
}

/// The files of a class-per-folder tree or a CSV list with their labels, every listed file
/// present, for reading batch by batch ([`crate::stream::Files`]).
pub(crate) fn entries(path: &Path, csv: bool) -> Result<Vec<(PathBuf, u32)>> {
    let entries = if csv { csv_entries(path)? } else { tree_entries(path)? };
    if csv {
        if let Some((p, _)) = entries.iter().find(|(p, _)| !p.is_file()) {
            return Err(DatasetError::Io {
                path: p.clone(),
                message: format!("listed in {} but not found", path.display()),
            });
        }
    }
    Ok(entries)
}

/// One image file, decoded.
pub(crate) fn decode(p: &Path) -> Result<DynamicImage> {
    image::ImageReader::open(p)
        .map_err(|e| io(p, e))?
        .with_guessed_format()
        .map_err(|e| io(p, e))?
        .decode()
        .map_err(|e| DatasetError::Format { path: p.into(), message: format!("cannot decode the image ({e})") })
}

/// Decodes the images, picks 1 or 3 channels, resizes/crops and stacks them.
fn load(source: &Path, entries: &[(PathBuf, u32)], opts: &OpenOptions) -> Result<ImageSet> {
    let decoded = entries.iter().map(|(p, _)| decode(p)).collect::<Result<Vec<DynamicImage>>>()?;
    let gray = decoded.iter().all(|d| !d.color().has_color());
    let mut images = Vec::new();
    let mut shape: Option<([usize; 3], &Path)> = None;
    for (img, (path, _)) in decoded.iter().zip(entries) {
        let (h, w) = (img.height() as usize, img.width() as usize);
        let (chw, c) = if gray {
            (img.to_luma32f().into_raw(), 1)
        } else {
            (crate::to_chw(img.to_rgb32f().into_raw(), 1, [h, w, 3], true).0, 3)
        };
        let (chw, s) = opts.fit(&chw, [c, h, w], &path.display().to_string())?;
        match shape {
            None => shape = Some((s, path)),
            Some((first, first_path)) if first != s => {
                return Err(DatasetError::Invalid {
                    path: path.clone(),
                    message: format!(
                        "image is {}x{} but {} is {}x{}; give --resize and/or --center-crop to bring every image to one size",
                        s[1],
                        s[2],
                        first_path.display(),
                        first[1],
                        first[2]
                    ),
                })
            }
            Some(_) => {}
        }
        images.extend(chw);
    }
    let shape = shape.map(|(s, _)| s).unwrap_or([1, 1, 1]);
    ImageSet::new(source.display().to_string(), shape, images, entries.iter().map(|(_, l)| *l).collect())
}
