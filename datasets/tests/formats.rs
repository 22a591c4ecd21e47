//! Every dataset format loads to the same values; bad input gives a clear error.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use gauntlet_datasets::{
    center_crop_chw, input_files, open, open_source, open_with, samples, CifarKind, DataLayout, ImageSet, OpenOptions,
    Resize, Source,
};
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

/// The pixel byte at (channel, y, x) of CIFAR record `r` in the fixtures below.
fn cifar_byte(r: usize, c: usize, y: usize, x: usize) -> u8 {
    ((c * 1024 + y * 32 + x) * 7 + r * 13) as u8
}

/// CIFAR records with the given label bytes and `cifar_byte` pixels (record index offset by `first`).
fn cifar_bytes(labels: &[&[u8]], first: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (r, lab) in labels.iter().enumerate() {
        out.extend_from_slice(lab);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    out.push(cifar_byte(first + r, c, y, x));
                }
            }
        }
    }
    out
}

fn px(set: &ImageSet, i: usize, c: usize, y: usize, x: usize) -> f32 {
    let [_, h, w] = set.shape;
    set.image(i)[(c * h + y) * w + x]
}

#[test]
fn cifar10_binary_labels_and_chw_pixels() {
    let d = tmpdir("cifar10");
    let p = d.join("test_batch.bin");
    std::fs::write(&p, cifar_bytes(&[&[3], &[0], &[9]], 0)).unwrap();
    let set = open(&p).unwrap();
    assert_eq!(set.shape, [3, 32, 32]);
    assert_eq!(set.labels, vec![3, 0, 9]);
    for (i, c, y, x) in [(0, 0, 0, 0), (1, 1, 2, 5), (2, 2, 31, 30), (2, 0, 17, 3)] {
        assert_eq!(px(&set, i, c, y, x), cifar_byte(i, c, y, x) as f32 / 255.0, "sample {i} at ({c}, {y}, {x})");
    }
    // The green plane starts 1,024 values into an image: (C, H, W) order.
    assert_eq!(set.image(1)[1024], cifar_byte(1, 1, 0, 0) as f32 / 255.0);
}

#[test]
fn cifar10_folder_prefers_test_batch_else_all_training_batches() {
    let d = tmpdir("cifar10dir");
    std::fs::write(d.join("data_batch_2.bin"), cifar_bytes(&[&[5]], 1)).unwrap();
    std::fs::write(d.join("data_batch_1.bin"), cifar_bytes(&[&[1]], 0)).unwrap();
    std::fs::write(d.join("batches.meta.txt"), "airplane\n").unwrap();
    let set = open(&d).unwrap();
    assert_eq!(set.labels, vec![1, 5]);
    assert_eq!(px(&set, 1, 2, 4, 4), cifar_byte(1, 2, 4, 4) as f32 / 255.0);
    assert_eq!(input_files(&d).unwrap(), vec![d.join("data_batch_1.bin"), d.join("data_batch_2.bin")]);
    std::fs::write(d.join("test_batch.bin"), cifar_bytes(&[&[7], &[8], &[2]], 0)).unwrap();
    assert_eq!(open(&d).unwrap().labels, vec![7, 8, 2]);
    assert_eq!(input_files(&d).unwrap(), vec![d.join("test_batch.bin")]);
}

#[test]
fn cifar100_binary_uses_the_fine_label() {
    let d = tmpdir("cifar100");
    // (coarse, fine) label pairs.
    std::fs::write(d.join("test.bin"), cifar_bytes(&[&[11, 42], &[19, 99], &[0, 4]], 0)).unwrap();
    std::fs::write(d.join("train.bin"), cifar_bytes(&[&[1, 1]], 0)).unwrap();
    let set = open(&d.join("test.bin")).unwrap();
    assert_eq!(set.labels, vec![42, 99, 4]);
    assert_eq!(px(&set, 2, 1, 31, 0), cifar_byte(2, 1, 31, 0) as f32 / 255.0);
    // The folder opens the test split.
    assert_eq!(open(&d).unwrap().labels, vec![42, 99, 4]);
    // Forcing CIFAR-10 on a CIFAR-100 file is a clear error.
    let opts = OpenOptions { cifar: Some(CifarKind::Cifar10), ..Default::default() };
    let e = open_with(&d.join("test.bin"), &opts).unwrap_err().to_string();
    assert!(e.contains("test.bin") && e.contains("cifar-10"), "{e}");
}

#[test]
fn cifar_kind_from_length_then_name() {
    assert_eq!(CifarKind::detect("data_batch_1.bin", 10_000 * 3073), CifarKind::Cifar10);
    assert_eq!(CifarKind::detect("test.bin", 10_000 * 3074), CifarKind::Cifar100);
    assert_eq!(CifarKind::detect("whatever.bin", 10_000 * 3074), CifarKind::Cifar100);
    // A length that fits both record sizes: decided by name.
    assert_eq!(CifarKind::detect("train.bin", 3073 * 3074), CifarKind::Cifar100);
    assert_eq!(CifarKind::detect("my_batch.bin", 3073 * 3074), CifarKind::Cifar10);
}

#[test]
fn truncated_cifar_file_is_one_line_naming_it() {
    let d = tmpdir("cifartrunc");
    let mut bytes = cifar_bytes(&[&[1], &[2]], 0);
    bytes.truncate(3073 + 1000);
    let p = d.join("data_batch_1.bin");
    std::fs::write(&p, bytes).unwrap();
    let e = open(&p).unwrap_err().to_string();
    assert!(e.contains("data_batch_1.bin") && e.contains("truncated") && e.contains("4073 bytes"), "{e}");
    assert!(!e.contains('\n'));
}

/// Writes an 8-bit RGB PNG of (H, W) = (h, w) whose pixel (y, x) is `f(y, x)`.
fn write_rgb(path: &Path, h: u32, w: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(y, x))).save(path).unwrap();
}

fn write_gray(path: &Path, h: u32, w: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(y, x)])).save(path).unwrap();
}

fn rgb_pattern(seed: u32) -> impl Fn(u32, u32) -> [u8; 3] {
    move |y, x| [(seed * 50 + y * 10 + x) as u8, (100 + seed + y) as u8, (200 + x) as u8]
}

#[test]
fn image_folder_classes_sorted_files_sorted_pixels_chw() {
    let d = tmpdir("folder");
    write_rgb(&d.join("dog/b.png"), 2, 3, rgb_pattern(0));
    write_rgb(&d.join("dog/a.png"), 2, 3, rgb_pattern(1));
    write_rgb(&d.join("cat/x.png"), 2, 3, rgb_pattern(2));
    write_rgb(&d.join("ant/z.PNG"), 2, 3, rgb_pattern(3));
    std::fs::write(d.join("dog/notes.txt"), "not an image").unwrap();
    let set = open(&d).unwrap();
    assert_eq!(set.shape, [3, 2, 3]);
    // ant = 0, cat = 1, dog = 2; within dog, a.png before b.png.
    assert_eq!(set.labels, vec![0, 1, 2, 2]);
    for (i, seed) in [3, 2, 1, 0].into_iter().enumerate() {
        for (y, x) in [(0, 0), (1, 2), (0, 1)] {
            let want = rgb_pattern(seed)(y as u32, x as u32);
            for (c, &v) in want.iter().enumerate() {
                assert_eq!(px(&set, i, c, y, x), v as f32 / 255.0, "sample {i} ({c}, {y}, {x})");
            }
        }
    }
    let files = input_files(&d).unwrap();
    assert_eq!(files, vec![d.join("ant/z.PNG"), d.join("cat/x.png"), d.join("dog/a.png"), d.join("dog/b.png")]);
    // An empty class folder would shift the labels: refused.
    std::fs::create_dir_all(d.join("emu")).unwrap();
    let e = open(&d).unwrap_err().to_string();
    assert!(e.contains("emu") && e.contains("no images"), "{e}");
}

#[test]
fn grayscale_images_give_one_channel_mixed_give_rgb() {
    let d = tmpdir("gray");
    write_gray(&d.join("0/a.png"), 2, 2, |y, x| (y * 2 + x) as u8 * 60);
    write_gray(&d.join("1/a.png"), 2, 2, |_, _| 255);
    let set = open(&d).unwrap();
    assert_eq!(set.shape, [1, 2, 2]);
    assert_eq!(set.image(0), &[0.0, 60.0 / 255.0, 120.0 / 255.0, 180.0 / 255.0]);
    assert_eq!(set.image(1), &[1.0; 4]);
    write_rgb(&d.join("2/a.png"), 2, 2, |_, _| [10, 20, 30]);
    let set = open(&d).unwrap();
    assert_eq!(set.shape, [3, 2, 2]);
    // Gray replicated into each of R, G and B.
    assert_eq!(px(&set, 0, 0, 1, 1), 180.0 / 255.0);
    assert_eq!(px(&set, 0, 2, 1, 1), 180.0 / 255.0);
    assert_eq!(px(&set, 2, 1, 0, 0), 20.0 / 255.0);
}

#[test]
fn jpeg_and_bmp_decode() {
    let d = tmpdir("jpeg");
    std::fs::create_dir_all(d.join("a")).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 50])).save(d.join("a/x.jpg")).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 50])).save(d.join("a/y.bmp")).unwrap();
    let set = open(&d).unwrap();
    assert_eq!((set.shape, set.labels.len()), ([3, 8, 8], 2));
    for (c, want) in [(0, 200.0), (1, 100.0), (2, 50.0)] {
        // JPEG is lossy; a flat colour survives within a few levels.
        assert!((px(&set, 0, c, 3, 4) * 255.0 - want).abs() <= 3.0);
        assert_eq!(px(&set, 1, c, 3, 4) * 255.0, want);
    }
}

#[test]
fn different_sizes_need_resize_or_crop() {
    let d = tmpdir("sizes");
    write_rgb(&d.join("a/1.png"), 8, 12, |_, x| if x % 2 == 0 { [0; 3] } else { [255; 3] });
    write_rgb(&d.join("b/1.png"), 10, 8, |_, x| if x % 2 == 0 { [0; 3] } else { [255; 3] });
    let e = open(&d).unwrap_err().to_string();
    assert!(e.contains("b/1.png") && e.contains("a/1.png") && e.contains("--resize"), "{e}");
    // Shorter side to 4: 8×12 → 4×6, 10×8 → 5×4; still different, so crop to 4×4 as well.
    let opts = OpenOptions { resize: Some(Resize::ShorterSide(4)), center_crop: Some([4, 4]), ..Default::default() };
    let set = open_with(&d, &opts).unwrap();
    assert_eq!(set.shape, [3, 4, 4]);
    // Halving alternating 0/1 columns with the bilinear filter: inner pixels are exactly 0.5.
    assert!((px(&set, 0, 0, 2, 1) - 0.5).abs() < 1e-6, "{}", px(&set, 0, 0, 2, 1));
    assert!((px(&set, 1, 2, 1, 2) - 0.5).abs() < 1e-6, "{}", px(&set, 1, 2, 1, 2));
    assert_eq!(Resize::ShorterSide(4).target(8, 12), [4, 6]);
    assert_eq!(Resize::ShorterSide(4).target(10, 8), [5, 4]);
    let exact = OpenOptions { resize: Some(Resize::Exact([3, 5])), ..Default::default() };
    assert_eq!(open_with(&d, &exact).unwrap().shape, [3, 3, 5]);
}

#[test]
fn center_crop_values_and_torchvision_offsets() {
    let d = tmpdir("crop");
    write_gray(&d.join("c/1.png"), 5, 6, |y, x| (y * 6 + x) as u8 * 8);
    let opts = OpenOptions { center_crop: Some([3, 2]), ..Default::default() };
    let set = open_with(&d, &opts).unwrap();
    assert_eq!(set.shape, [1, 3, 2]);
    // Offsets round((5 − 3) / 2) = 1 and round((6 − 2) / 2) = 2.
    let want: Vec<f32> = [(1, 2), (1, 3), (2, 2), (2, 3), (3, 2), (3, 3)]
        .iter()
        .map(|&(y, x)| ((y * 6 + x) * 8) as f32 / 255.0)
        .collect();
    assert_eq!(set.image(0), &want[..]);
    // Odd margins round half to even like Python: 3 / 2 → 2, 5 / 2 → 2.
    let row: Vec<f32> = (0..6).map(|v| v as f32).collect();
    assert_eq!(center_crop_chw(&row, [1, 6, 1], [3, 1]).unwrap(), vec![2.0, 3.0, 4.0]);
    let row: Vec<f32> = (0..8).map(|v| v as f32).collect();
    assert_eq!(center_crop_chw(&row, [1, 1, 8], [1, 3]).unwrap(), vec![2.0, 3.0, 4.0]);
    let big = OpenOptions { center_crop: Some([6, 6]), ..Default::default() };
    let e = open_with(&d, &big).unwrap_err().to_string();
    assert!(e.contains("larger than the image") && e.contains("1.png"), "{e}");
}

#[test]
fn csv_with_header_and_relative_paths() {
    let d = tmpdir("csv");
    write_rgb(&d.join("imgs/a.png"), 2, 2, rgb_pattern(4));
    write_rgb(&d.join("b.png"), 2, 2, rgb_pattern(5));
    std::fs::create_dir_all(d.join("lists")).unwrap();
    let csv = d.join("lists/data.csv");
    std::fs::write(&csv, "path,label\n../imgs/a.png,7\n\n\"../b.png\", 3\n").unwrap();
    let set = open(&csv).unwrap();
    assert_eq!(set.labels, vec![7, 3]);
    assert_eq!(px(&set, 1, 0, 1, 1), rgb_pattern(5)(1, 1)[0] as f32 / 255.0);
    assert_eq!(input_files(&csv).unwrap(), vec![csv.clone(), d.join("lists/../imgs/a.png"), d.join("lists/../b.png")]);
    // Without a header.
    std::fs::write(&csv, "../b.png,1\n").unwrap();
    assert_eq!(open(&csv).unwrap().labels, vec![1]);
    // A bad label further down is an error naming the file and line.
    std::fs::write(&csv, "path,label\n../b.png,1\n../imgs/a.png,cat\n").unwrap();
    let e = open(&csv).unwrap_err().to_string();
    assert!(e.contains("data.csv") && e.contains("line 3") && e.contains("`cat`"), "{e}");
    std::fs::write(&csv, "../b.png,-1\n").unwrap();
    assert!(open(&csv).is_err());
    std::fs::write(&csv, "../missing.png,1\n").unwrap();
    let e = open(&csv).unwrap_err().to_string();
    assert!(e.contains("missing.png") && e.contains("not found"), "{e}");
}

#[test]
fn nhwc_npy_equals_nchw_after_transpose() {
    let d = tmpdir("nhwc");
    // (N, H, W, C) = (2, 4, 4, 3): both axes 1 and 3 could be channels, so auto reads NCHW.
    let nchw = Array4::from_shape_fn((2, 3, 4, 4), |(n, c, y, x)| (n * 48 + c * 16 + y * 4 + x) as u8);
    let nhwc = nchw.clone().permuted_axes([0, 2, 3, 1]).as_standard_layout().to_owned();
    nhwc.write_npy(std::fs::File::create(d.join("images.npy")).unwrap()).unwrap();
    Array1::from(vec![1u8, 2]).write_npy(std::fs::File::create(d.join("labels.npy")).unwrap()).unwrap();
    let opts = OpenOptions { layout: DataLayout::Nhwc, ..Default::default() };
    let set = open_with(&d.join("images.npy"), &opts).unwrap();
    assert_eq!(set.shape, [3, 4, 4]);
    let want: Vec<f32> = nchw.iter().map(|&v| v as f32 / 255.0).collect();
    assert_eq!(set.images, want);
    assert_eq!(open(&d.join("images.npy")).unwrap().shape, [4, 4, 3]);
    let forced = OpenOptions { layout: DataLayout::Nchw, ..Default::default() };
    assert_eq!(open_with(&d.join("images.npy"), &forced).unwrap().shape, [4, 4, 3]);
    assert_eq!(input_files(&d.join("images.npy")).unwrap(), vec![d.join("images.npy"), d.join("labels.npy")]);
    // (N, 1, 4, 4) is grayscale NCHW under auto, not 4 channels last.
    nchw.slice(ndarray::s![.., 0..1, .., ..])
        .to_owned()
        .write_npy(std::fs::File::create(d.join("images.npy")).unwrap())
        .unwrap();
    assert_eq!(open(&d.join("images.npy")).unwrap().shape, [1, 4, 4]);
}

#[test]
fn resize_applies_to_arrays_too() {
    let d = tmpdir("resizearr");
    let p = d.join("data.npz");
    let mut w = NpzWriter::new(std::fs::File::create(&p).unwrap());
    w.add_array("images", &Array4::<u8>::from_elem((2, 1, 6, 4), 153)).unwrap();
    w.add_array("labels", &Array1::from(vec![0i64, 1])).unwrap();
    w.finish().unwrap();
    let opts = OpenOptions { resize: Some(Resize::ShorterSide(2)), ..Default::default() };
    let set = open_with(&p, &opts).unwrap();
    assert_eq!(set.shape, [1, 3, 2]);
    assert!(set.images.iter().all(|&v| (v - 0.6).abs() < 1e-6));
}

#[test]
fn options_parse() {
    assert_eq!("32".parse::<Resize>().unwrap(), Resize::ShorterSide(32));
    assert_eq!("24, 32".parse::<Resize>().unwrap(), Resize::Exact([24, 32]));
    assert_eq!(gauntlet_datasets::parse_crop("28").unwrap(), [28, 28]);
    for bad in ["0", "a", "1,2,3", "", "-4"] {
        let e = bad.parse::<Resize>().unwrap_err().to_string();
        assert!(e.starts_with("--resize"), "{e}");
    }
    assert_eq!("NHWC".parse::<DataLayout>().unwrap(), DataLayout::Nhwc);
    assert!("hwc".parse::<DataLayout>().is_err());
}

/// Fashion-MNIST ships in MNIST's IDX format: 28×28 gray images, labels 0..9.
#[test]
fn fashion_mnist_idx() {
    let d = tmpdir("fashion");
    let n = 3u32;
    let pixel = |i: u32, y: u32, x: u32| ((i * 31 + y * 28 + x) % 256) as u8;
    let mut img = vec![0, 0, 8, 3];
    for v in [n, 28, 28] {
        img.extend(v.to_be_bytes());
    }
    for i in 0..n {
        for y in 0..28 {
            for x in 0..28 {
                img.push(pixel(i, y, x));
            }
        }
    }
    let mut lab = vec![0, 0, 8, 1];
    lab.extend(n.to_be_bytes());
    lab.extend([9u8, 0, 7]); // ankle boot, T-shirt/top, sneaker
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&img).unwrap();
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), &lab).unwrap();
    for set in [open(&d).unwrap(), open(&d.join("t10k-images-idx3-ubyte.gz")).unwrap()] {
        assert_eq!(set.shape, [1, 28, 28]);
        assert_eq!(set.labels, vec![9, 0, 7]);
        assert_eq!(px(&set, 2, 0, 27, 5), pixel(2, 27, 5) as f32 / 255.0);
        set.validate([1, 28, 28], 10).unwrap();
    }
}

#[test]
fn classes_file_fixes_the_label_order() {
    let d = tmpdir("classes");
    write_gray(&d.join("cat/1.png"), 2, 2, |_, _| 10);
    write_gray(&d.join("ant/1.png"), 2, 2, |_, _| 20);
    std::fs::write(d.join("classes.txt"), "zebra\ncat\n\nyak\nant\n").unwrap();
    let set = open(&d).unwrap();
    // Listed order: zebra 0 (no folder), cat 1, yak 2 (no folder), ant 3; read in that order.
    assert_eq!(set.labels, vec![1, 3]);
    assert_eq!(set.image(0)[0], 10.0 / 255.0);
    write_gray(&d.join("bee/1.png"), 2, 2, |_, _| 30);
    let e = open(&d).unwrap_err().to_string();
    assert!(e.contains("classes.txt") && e.contains("`bee`"), "{e}");
}

/// The shipped CIFAR-10 sample: 20 test images whose labels are CIFAR-10's (via classes.txt).
#[test]
fn shipped_cifar10_sample() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-sample");
    let set = open(&root).unwrap();
    assert_eq!((set.labels.len(), set.shape), (20, [3, 32, 32]));
    set.validate([3, 32, 32], 10).unwrap();
    let names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    let files = input_files(&root).unwrap();
    assert_eq!(files.len(), 20);
    let mut by_index = [0u32; 20];
    for (f, &label) in files.iter().zip(&set.labels) {
        let class = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
        assert_eq!(names[label as usize], class);
        let i: usize = f.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        by_index[i] = label;
    }
    // The CIFAR-10 test set begins cat, ship, ship, airplane, frog, frog, automobile, frog.
    assert_eq!(&by_index[..8], &[3, 8, 8, 0, 6, 6, 1, 6]);
}

/// Archives written by numpy itself (`tests/golden/npz/make_npz.py`), stored and deflated (what
/// `np.savez_compressed` writes), hold exactly the first 8 shipped MNIST test images.
#[test]
fn numpy_archives_stored_and_compressed() {
    let shipped = samples::mnist_test_1k().unwrap();
    for name in ["mnist8.npz", "mnist8_compressed.npz"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/npz").join(name);
        let set = open(&path).unwrap();
        assert_eq!(set.labels, shipped.labels[..8], "{name}");
        assert_eq!(set.shape, [1, 28, 28], "{name}");
        for i in 0..8 {
            assert_eq!(set.image(i), shipped.image(i), "{name}: image {i}");
        }
    }
}

/// `open_source` serves the images and labels `open_with` loads, bit for bit, whatever the order
/// of the reads (forwards, backwards, overlapping) and through `select`.
fn assert_streams_like_memory(path: &Path, opts: &OpenOptions) {
    let whole = open_with(path, opts).unwrap();
    let s = open_source(path, opts).unwrap();
    let n = whole.labels.len();
    assert_eq!((s.labels(), s.shape(), s.source()), (&whole.labels[..], whole.shape, &whole.source[..]));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for r in [0..n, n / 2..n, 0..1, n / 3..2 * n / 3, n - 1..n, 0..n / 2] {
        let got = s.read(r.clone()).unwrap();
        let per = whole.per_image();
        assert_eq!(bits(&got.images), bits(&whole.images[r.start * per..r.end * per]), "{}: {r:?}", path.display());
        assert_eq!(got.labels, whole.labels[r].to_vec());
    }
    let mut idx: Vec<usize> = (0..n).rev().step_by(2).collect();
    idx.push(0);
    let picked = s.select(&idx).unwrap();
    assert_eq!(bits(&picked.images), bits(&whole.select(&idx).images), "{}: select", path.display());
    assert!(s.read(0..n + 1).is_err());
}

#[test]
fn streaming_sources_read_what_the_loaders_read() {
    let d = tmpdir("streaming");
    let plain = OpenOptions::default();
    let fitted =
        OpenOptions { resize: Some(Resize::ShorterSide(14)), center_crop: Some([12, 12]), ..Default::default() };
    // IDX: the shipped gzip pair, and raw files.
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-test-1k");
    assert_streams_like_memory(&mnist, &plain);
    assert_streams_like_memory(&mnist, &fitted);
    write_idx(&d, "train-", 37, false);
    assert_streams_like_memory(&d.join("train-images-idx3-ubyte"), &plain);
    // CIFAR: one batch, and a folder of training batches read as one.
    let c = d.join("cifar");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("data_batch_1.bin"), cifar_bytes(&[&[3], &[0], &[9]], 0)).unwrap();
    std::fs::write(c.join("data_batch_2.bin"), cifar_bytes(&[&[1], &[2]], 3)).unwrap();
    assert_streams_like_memory(&c.join("data_batch_1.bin"), &plain);
    assert_streams_like_memory(&c, &plain);
    assert_streams_like_memory(&c, &fitted);
    // Image folders (the shipped CIFAR-10 PNGs) and a CSV list.
    let pngs = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-sample");
    assert_streams_like_memory(&pngs, &plain);
    assert_streams_like_memory(&pngs, &OpenOptions { resize: Some(Resize::Exact([20, 24])), ..Default::default() });
    write_gray(&d.join("g.png"), 3, 4, |x, y| (x * 40 + y * 3) as u8);
    write_rgb(&d.join("c.png"), 3, 4, rgb_pattern(2));
    std::fs::write(d.join("list.csv"), "g.png,1\nc.png,2\ng.png,3\n").unwrap();
    assert_streams_like_memory(&d.join("list.csv"), &plain);
    // Arrays are served from memory.
    let npz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/npz/mnist8_compressed.npz");
    assert_streams_like_memory(&npz, &plain);
}

#[test]
fn a_streaming_source_reads_the_file_when_asked_not_before() {
    let d = tmpdir("streaming-lazy");
    write_idx(&d, "t10k-", 20_000, false);
    let path = d.join("t10k-images-idx3-ubyte");
    let s = open_source(&path, &OpenOptions::default()).unwrap();
    assert_eq!(s.len(), 20_000);
    // Change the last image on disk after opening: the source must see the new bytes.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&[255, 0, 255, 0]);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(s.read(19_999..20_000).unwrap().images, vec![1.0, 0.0, 1.0, 0.0]);
    // A file cut short after opening is an error naming it, not a panic.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = s.read(19_000..19_010).unwrap_err().to_string();
    assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("truncated"), "{e}");
}

#[test]
fn streaming_sources_refuse_what_the_loaders_refuse() {
    let d = tmpdir("streaming-bad");
    write_idx(&d, "t10k-", 5, false);
    let path = d.join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let a = open_with(&path, &OpenOptions::default()).unwrap_err().to_string();
    let b = open_source(&path, &OpenOptions::default()).err().unwrap().to_string();
    assert_eq!(a, b);
    let cifar = d.join("test_batch.bin");
    std::fs::write(&cifar, &cifar_bytes(&[&[3], &[0]], 0)[..5000]).unwrap();
    let a = open_with(&cifar, &OpenOptions::default()).unwrap_err().to_string();
    let b = open_source(&cifar, &OpenOptions::default()).err().unwrap().to_string();
    assert_eq!(a, b);
    std::fs::write(&cifar, cifar_bytes(&[&[3], &[0], &[12]], 0)).unwrap();
    let a = open_with(&cifar, &OpenOptions::default()).unwrap_err().to_string();
    let b = open_source(&cifar, &OpenOptions::default()).err().unwrap().to_string();
    assert_eq!(a, b);
}
