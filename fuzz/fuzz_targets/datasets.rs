//! Every dataset parser on arbitrary bytes: the first byte picks the format, the rest is the file.
//! Any input must give a dataset or an error, never a panic or an unbounded allocation.
#![no_main]

use std::path::{Path, PathBuf};

use gauntlet::datasets::{self, cifar, CifarKind, Source};
use libfuzzer_sys::fuzz_target;

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("gauntlet-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn open_as(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let _ = datasets::open(&p);
    stream(&p);
}

/// The same file read batch by batch: opened, every block read, a selection read.
fn stream(p: &Path) {
    let Ok(s) = datasets::open_source(p, &datasets::OpenOptions::default()) else { return };
    let n = s.len();
    for start in (0..n).step_by(64) {
        if s.read(start..(start + 64).min(n)).is_err() {
            return;
        }
    }
    let _ = s.select(&[n.saturating_sub(1), 0]);
    let _ = s.validate(s.shape(), 10);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let dir = scratch();
    match which % 7 {
        0 => {
            // An IDX pair: the second byte splits images from labels.
            let at = bytes.first().map_or(0, |&b| b as usize).min(bytes.len());
            let (images, labels) = bytes.split_at(at);
            let _ = datasets::idx::from_bytes(images, labels, Path::new("images"), Path::new("labels"));
            // The same pair as files, raw, read batch by batch.
            std::fs::write(dir.join("f-labels-idx1-ubyte"), labels).unwrap();
            std::fs::write(dir.join("f-images-idx3-ubyte"), images).unwrap();
            stream(&dir.join("f-images-idx3-ubyte"));
        }
        1 => {
            std::fs::write(dir.join("f-labels.npy"), bytes).unwrap();
            open_as(&dir, "f-images.npy", bytes);
        }
        2 => open_as(&dir, "f.npz", bytes),
        3 => open_as(&dir, "f.safetensors", bytes),
        4 => {
            let _ = cifar::parse(bytes, CifarKind::Cifar10, Path::new("test_batch.bin"));
            let _ = cifar::parse(bytes, CifarKind::Cifar100, Path::new("test.bin"));
            std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
            stream(&dir.join("test_batch.bin"));
        }
        5 => open_as(&dir, "f.csv", bytes),
        _ => {
            std::fs::create_dir_all(dir.join("tree/0")).unwrap();
            std::fs::write(dir.join("tree/0/a.png"), bytes).unwrap();
            let _ = datasets::open(&dir.join("tree"));
            stream(&dir.join("tree"));
        }
    }
});
