//! Every dataset format loads to the same values; bad input gives a clear error.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use gauntlet_datasets::{open, samples, ImageSet};
use ndarray::{Array1, Array4};
use ndarray_npy::{NpzWriter, WriteNpyExt};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gauntlet-ds-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 3 images of 3×2×2 (C, H, W), uint8, distinct values; labels 0, 4, 9.
fn reference() -> (Vec<u8>, Vec<u32>) {
    ((0..36).map(|v| (v * 7) as u8).collect(), vec![0, 4, 9])
}

fn expect_reference(set: &ImageSet) {
    let (raw, labels) = reference();
    assert_eq!(set.shape, [3, 2, 2]);
    assert_eq!(set.labels, labels);
    let want: Vec<f32> = raw.iter().map(|&v| v as f32 / 255.0).collect();
    for (a, b) in set.images.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6);
    }
}

fn nchw() -> Array4<u8> {
    Array4::from_shape_vec((3, 3, 2, 2), reference().0).unwrap()
}

#[test]
fn npz_channels_first_uint8() {
    let d = tmpdir("npz1");
    let p = d.join("data.npz");
    let mut w = NpzWriter::new(std::fs::File::create(&p).unwrap());
    w.add_array("images", &nchw()).unwrap();
    w.add_array("labels", &Array1::from(vec![0i64, 4, 9])).unwrap();
    w.finish().unwrap();
    expect_reference(&open(&p).unwrap());
}

#[test]
fn npz_channels_last_float() {
    let d = tmpdir("npz2");
    let p = d.join("data.npz");
    let nhwc = nchw().permuted_axes([0, 2, 3, 1]).mapv(|v| v as f32 / 255.0);
    let nhwc = nhwc.as_standard_layout().to_owned();
    let mut w = NpzWriter::new(std::fs::File::create(&p).unwrap());
    w.add_array("images", &nhwc).unwrap();
    w.add_array("labels", &Array1::from(vec![0u8, 4, 9])).unwrap();
    w.finish().unwrap();
    expect_reference(&open(&p).unwrap());
}

#[test]
fn npy_pair() {
    let d = tmpdir("npy");
    nchw().write_npy(std::fs::File::create(d.join("test_images.npy")).unwrap()).unwrap();
    Array1::from(vec![0i32, 4, 9]).write_npy(std::fs::File::create(d.join("test_labels.npy")).unwrap()).unwrap();
    expect_reference(&open(&d.join("test_images.npy")).unwrap());
}

#[test]
fn safetensors_set() {
    let d = tmpdir("st");
    let p = d.join("data.safetensors");
    let images = Tensor::from_vec(reference().0, (3, 3, 2, 2), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(vec![0i64, 4, 9], 3, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &[("images", images), ("labels", labels)].into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        &p,
    )
    .unwrap();
    expect_reference(&open(&p).unwrap());
}

fn write_idx(dir: &Path, prefix: &str, n: u32, gz: bool) {
    let mut img = vec![0, 0, 8, 3];
    for v in [n, 2, 2] {
        img.extend(v.to_be_bytes());
    }
    img.extend((0..n * 4).map(|v| v as u8));
    let mut lab = vec![0, 0, 8, 1];
    lab.extend(n.to_be_bytes());
    lab.extend((0..n).map(|v| (v % 10) as u8));
    for (name, bytes) in [("images-idx3-ubyte", img), ("labels-idx1-ubyte", lab)] {
        let path = dir.join(format!("{prefix}{name}{}", if gz { ".gz" } else { "" }));
        let mut f = std::fs::File::create(path).unwrap();
        if gz {
            let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::default());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap();
        } else {
            f.write_all(&bytes).unwrap();
        }
    }
}

#[test]
fn idx_raw_gzip_and_folder() {
    let d = tmpdir("idx");
    write_idx(&d, "t10k-", 5, true);
    write_idx(&d, "train-", 7, false);
    let a = open(&d.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((a.labels.len(), a.shape), (5, [1, 2, 2]));
    assert_eq!(a.images[5], 5.0 / 255.0);
    let b = open(&d.join("train-images-idx3-ubyte")).unwrap();
    assert_eq!(b.labels.len(), 7);
    // A folder with both splits opens the test split.
    assert_eq!(open(&d).unwrap().labels.len(), 5);
}

#[test]
fn shipped_mnist_sample() {
    let s = samples::mnist_test_1k().unwrap();
    assert_eq!((s.labels.len(), s.shape), (1000, [1, 28, 28]));
    // The first MNIST test labels are 7, 2, 1, 0, 4.
    assert_eq!(&s.labels[..5], &[7, 2, 1, 0, 4]);
    s.validate([1, 28, 28], 10).unwrap();
}

#[test]
fn bad_input_is_named() {
    let d = tmpdir("bad");
    let p = d.join("t10k-images-idx3-ubyte");
    std::fs::write(&p, b"garbage").unwrap();
    let e = open(&p).unwrap_err().to_string();
    assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("labels"), "{e}");
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), b"\0\0\x08\x01\0\0\0\x01\x03").unwrap();
    let e = open(&p).unwrap_err().to_string();
    assert!(e.contains("bad magic") || e.contains("not an IDX"), "{e}");
    let e = open(&d.join("x.csv")).unwrap_err().to_string();
    assert!(e.contains("no such file"), "{e}");
    std::fs::write(d.join("x.npz"), b"PK-not-really").unwrap();
    assert!(open(&d.join("x.npz")).unwrap_err().to_string().contains("x.npz"));
}

#[test]
fn validation_catches_range_labels_nan_and_shape() {
    let ok = ImageSet::new("t", [1, 1, 2], vec![0.0, 1.0, 0.5, 0.5], vec![1, 2]).unwrap();
    ok.validate([1, 1, 2], 3).unwrap();
    assert!(ok.validate([1, 2, 1], 3).unwrap_err().to_string().contains("shape"));
    assert!(ok.validate([1, 1, 2], 2).unwrap_err().to_string().contains("label 2"));
    let big = ImageSet::new("t", [1, 1, 2], vec![0.0, 255.0, 0.5, 0.5], vec![1, 2]).unwrap();
    assert!(big.validate([1, 1, 2], 3).unwrap_err().to_string().contains("outside [0, 1]"));
    let nan = ImageSet::new("t", [1, 1, 2], vec![0.0, f32::NAN, 0.5, 0.5], vec![1, 2]).unwrap();
    assert!(nan.validate([1, 1, 2], 3).unwrap_err().to_string().contains("NaN"));
}
