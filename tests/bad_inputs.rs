//! A table of broken and hostile inputs. Each must end with exit status 2 and one line on stderr
//! that names the file or option at fault — no panic, no backtrace (also with `RUST_BACKTRACE=1`),
//! and no output file left behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tmpdir;
use gauntlet::models::onnx::builder::{tensor_f32, ModelBuilder};
use gauntlet::models::onnx::proto::data_type;
use ndarray::{Array1, Array4};
use prost::Message;

const SPEC: &str = "models/zoo/mnist-cnn.toml";
const WEIGHTS: &str = "models/zoo/mnist-cnn.safetensors";
const IMAGES: &str = "datasets/data/mnist-test-1k/t10k-images-idx3-ubyte.gz";

struct Case {
    name: &'static str,
    args: Vec<String>,
    /// Substrings the error line must hold (the file or option, and what is wrong).
    needles: Vec<String>,
}

/// An IDX header: magic, element type 0x08, the dimensions.
fn idx(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// An MNIST-style IDX pair in `dir/name/`: `n` images of 28×28 and the given labels.
fn idx_pair(dir: &Path, name: &str, images: Vec<u8>, labels: Vec<u8>) -> String {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("t10k-images-idx3-ubyte"), images).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), labels).unwrap();
    d.join("t10k-images-idx3-ubyte").display().to_string()
}

fn npz(path: &Path, images: Array4<f32>, labels: Option<Array1<i64>>) -> String {
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(path).unwrap());
    w.add_array("images", &images).unwrap();
    if let Some(l) = labels {
        w.add_array("labels", &l).unwrap();
    }
    w.finish().unwrap();
    path.display().to_string()
}

/// A safetensors file from a header (JSON) and the data bytes.
fn safetensors(path: &Path, header: &str, data: &[u8]) -> String {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    std::fs::write(path, v).unwrap();
    path.display().to_string()
}

/// The shipped spec beside other weights.
fn spec_with_weights(dir: &Path, name: &str, weights: Vec<u8>) -> String {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("mnist-cnn.safetensors"), weights).unwrap();
    std::fs::copy(SPEC, d.join("mnist-cnn.toml")).unwrap();
    d.join("mnist-cnn.toml").display().to_string()
}

fn onnx(path: &Path, b: ModelBuilder) -> String {
    std::fs::write(path, b.build().encode_to_vec()).unwrap();
    path.display().to_string()
}

fn cases(d: &Path) -> Vec<Case> {
    let s = |v: &str| v.to_string();
    let p = |p: &PathBuf| p.display().to_string();
    let img = vec![7u8; 28 * 28 * 4];
    let labels = idx(&[4], &[1, 2, 3, 4]);
    let good_images = idx(&[4, 28, 28], &img);
    let weights = std::fs::read(WEIGHTS).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let mut nan_weights = weights.clone();
    for chunk in nan_weights[8 + header_len..].chunks_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let mnist = |data: String| vec![s("run"), s("--dataset"), data];
    let model = |m: String| vec![s("run"), s("--model"), m, s("--dataset"), s(IMAGES)];
    let flags = |f: &[&str]| std::iter::once("run").chain(f.iter().copied()).map(String::from).collect::<Vec<_>>();
    let mut v = vec![
        // IDX
        Case {
            name: "idx truncated header",
            args: mnist(idx_pair(d, "idx-trunc", vec![0, 0, 8, 3, 0, 0], labels.clone())),
            needles: vec![s("idx-trunc"), s("truncated")],
        },
        Case {
            name: "idx wrong magic",
            args: mnist(idx_pair(d, "idx-magic", b"PK\x03\x04 not idx".to_vec(), labels.clone())),
            needles: vec![s("idx-magic"), s("magic")],
        },
        Case {
            name: "idx payload shorter than its header",
            args: mnist(idx_pair(d, "idx-short", idx(&[4, 28, 28], &img[..100]), labels.clone())),
            needles: vec![s("idx-short"), s("promises")],
        },
        Case {
            name: "idx header claiming a huge size",
            args: mnist(idx_pair(d, "idx-huge", idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), labels.clone())),
            needles: vec![s("idx-huge")],
        },
        Case {
            name: "idx element type not bytes",
            args: mnist(idx_pair(d, "idx-type", vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], labels.clone())),
            needles: vec![s("idx-type"), s("element type")],
        },
        Case {
            name: "image and label counts differ",
            args: mnist(idx_pair(d, "idx-count", good_images.clone(), idx(&[3], &[1, 2, 3]))),
            needles: vec![s("idx-count"), s("3 labels for 4 images")],
        },
        Case {
            name: "labels beyond the classes",
            args: mnist(idx_pair(d, "idx-label", good_images.clone(), idx(&[4], &[1, 200, 3, 4]))),
            needles: vec![s("200")],
        },
        Case {
            name: "corrupt gzip",
            args: mnist({
                let dd = d.join("idx-gz");
                std::fs::create_dir_all(&dd).unwrap();
                std::fs::write(dd.join("t10k-images-idx3-ubyte.gz"), [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
                std::fs::write(dd.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
                p(&dd.join("t10k-images-idx3-ubyte.gz"))
            }),
            needles: vec![s("idx-gz"), s("gzip")],
        },
        Case {
            name: "idx without its labels file",
            args: mnist({
                let dd = d.join("idx-nolabels");
                std::fs::create_dir_all(&dd).unwrap();
                std::fs::write(dd.join("t10k-images-idx3-ubyte"), &good_images).unwrap();
                p(&dd.join("t10k-images-idx3-ubyte"))
            }),
            needles: vec![s("idx-nolabels"), s("labels")],
        },
        // NPZ / NPY / safetensors data
        Case {
            name: "npz that is not a zip archive",
            args: mnist(common::write(d, "junk.npz", "this is not a zip archive")),
            needles: vec![s("junk.npz")],
        },
        Case {
            name: "npz cut in half",
            args: mnist({
                let full = npz(&d.join("full.npz"), Array4::zeros((4, 1, 28, 28)), Some(Array1::zeros(4)));
                let bytes = std::fs::read(&full).unwrap();
                std::fs::write(d.join("half.npz"), &bytes[..bytes.len() / 2]).unwrap();
                p(&d.join("half.npz"))
            }),
            needles: vec![s("half.npz")],
        },
        Case {
            name: "npz without labels",
            args: mnist(npz(&d.join("nolabels.npz"), Array4::zeros((4, 1, 28, 28)), None)),
            needles: vec![s("nolabels.npz"), s("labels")],
        },
        Case {
            name: "npz with NaN pixels",
            args: mnist(npz(&d.join("nan.npz"), Array4::from_elem((4, 1, 28, 28), f32::NAN), Some(Array1::zeros(4)))),
            needles: vec![s("NaN")],
        },
        Case {
            name: "npz with pixels out of [0, 1]",
            args: mnist(npz(&d.join("range.npz"), Array4::from_elem((4, 1, 28, 28), 2.0), Some(Array1::zeros(4)))),
            needles: vec![s("range.npz")],
        },
        Case {
            name: "data shape does not fit the model",
            args: mnist(npz(&d.join("shape.npz"), Array4::zeros((4, 3, 32, 32)), Some(Array1::zeros(4)))),
            needles: vec![s("shape.npz")],
        },
        Case {
            name: "an empty dataset",
            args: mnist(npz(&d.join("empty.npz"), Array4::zeros((0, 1, 28, 28)), Some(Array1::zeros(0)))),
            needles: vec![s("empty.npz"), s("empty")],
        },
        Case {
            name: "npy with a wrong magic",
            args: mnist({
                std::fs::write(d.join("x-images.npy"), b"\x93NUMPX garbage").unwrap();
                std::fs::write(d.join("x-labels.npy"), b"\x93NUMPX garbage").unwrap();
                p(&d.join("x-images.npy"))
            }),
            needles: vec![s("x-images.npy")],
        },
        Case {
            name: "npy header claiming a huge shape",
            args: mnist({
                let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000, 1, 28, 28), }";
                let mut v = b"\x93NUMPY\x01\x00".to_vec();
                let pad = 64 - (10 + header.len() + 1) % 64;
                let h = format!("{header}{}\n", " ".repeat(pad));
                v.extend((h.len() as u16).to_le_bytes());
                v.extend(h.as_bytes());
                v.extend([0u8; 64]);
                std::fs::write(d.join("huge-images.npy"), &v).unwrap();
                std::fs::write(d.join("huge-labels.npy"), &v).unwrap();
                p(&d.join("huge-images.npy"))
            }),
            needles: vec![s("huge-images.npy")],
        },
        Case {
            name: "safetensors data with a header length beyond the file",
            args: mnist({
                let mut v = u64::MAX.to_le_bytes().to_vec();
                v.extend(b"{}");
                std::fs::write(d.join("hdr.safetensors"), v).unwrap();
                p(&d.join("hdr.safetensors"))
            }),
            needles: vec![s("hdr.safetensors")],
        },
        Case {
            name: "safetensors data with overlapping offsets",
            args: mnist(safetensors(
                &d.join("overlap.safetensors"),
                r#"{"images":{"dtype":"F32","shape":[1,1,28,28],"data_offsets":[0,3136]},"labels":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}"#,
                &[0u8; 3136],
            )),
            needles: vec![s("overlap.safetensors")],
        },
        // CIFAR binary, image folders, CSV
        Case {
            name: "cifar batch of the wrong size",
            args: mnist(common::write(d, "test_batch.bin", "not 3073 bytes per record")),
            needles: vec![s("test_batch.bin")],
        },
        Case {
            name: "an image folder with no images",
            args: mnist({
                std::fs::create_dir_all(d.join("emptyfolder/cat")).unwrap();
                p(&d.join("emptyfolder"))
            }),
            needles: vec![s("emptyfolder")],
        },
        Case {
            name: "an image folder with a corrupt png",
            args: mnist({
                std::fs::create_dir_all(d.join("badpng/0")).unwrap();
                std::fs::write(d.join("badpng/0/a.png"), b"\x89PNG\r\n\x1a\ncut").unwrap();
                p(&d.join("badpng"))
            }),
            needles: vec![s("a.png")],
        },
        Case {
            name: "a csv naming a missing image",
            args: mnist(common::write(d, "list.csv", "missing.png,3\n")),
            needles: vec![s("missing.png")],
        },
        Case {
            name: "a csv label that is not a number",
            args: mnist({
                std::fs::create_dir_all(d.join("csvimg")).unwrap();
                std::fs::copy("datasets/data/cifar10-sample/airplane/03.png", d.join("csvimg/a.png")).unwrap();
                common::write(d, "labels.csv", "csvimg/a.png,cat\n")
            }),
            needles: vec![s("labels.csv")],
        },
        Case { name: "a dataset that does not exist", args: mnist(p(&d.join("nowhere"))), needles: vec![s("nowhere")] },
        // Models
        Case {
            name: "a pickled checkpoint",
            args: model(common::write(d, "model.pt", "\u{80}\u{2}pickle")),
            needles: vec![s("model.pt"), s("safetensors")],
        },
        Case {
            name: "an onnx file of garbage",
            args: model(common::write(d, "garbage.onnx", "definitely not protobuf \u{0}\u{1}")),
            needles: vec![s("garbage.onnx")],
        },
        Case {
            name: "an onnx file cut short",
            args: model({
                let bytes = std::fs::read("tests/golden/onnx/mnist_cnn.onnx").unwrap();
                std::fs::write(d.join("cut.onnx"), &bytes[..bytes.len() / 3]).unwrap();
                p(&d.join("cut.onnx"))
            }),
            needles: vec![s("cut.onnx")],
        },
        Case {
            name: "an onnx graph with an unsupported operator",
            args: model(s("tests/golden/onnx/unsupported_ops.onnx")),
            needles: vec![s("unsupported_ops.onnx"), s("unsupported")],
        },
        Case {
            name: "an onnx graph with a cycle",
            args: model(onnx(
                &d.join("cycle.onnx"),
                ModelBuilder::new(17)
                    .input("x", data_type::FLOAT, &[1, 1, 28, 28])
                    .node("Add", &["x", "b"], &["a"], vec![])
                    .node("Relu", &["a"], &["b"], vec![])
                    .output("a"),
            )),
            needles: vec![s("cycle.onnx")],
        },
        Case {
            name: "an onnx node reading a value nothing produces",
            args: model(onnx(
                &d.join("missing.onnx"),
                ModelBuilder::new(17)
                    .input("x", data_type::FLOAT, &[1, 1, 28, 28])
                    .initializer(tensor_f32("w", &[10, 784], vec![0.0; 7840]))
                    .node("Flatten", &["x"], &["f"], vec![])
                    .node("MatMul", &["f", "nothing"], &["y"], vec![])
                    .output("y"),
            )),
            needles: vec![s("missing.onnx"), s("nothing")],
        },
        Case {
            name: "an onnx model whose logits are infinite",
            args: model(onnx(
                &d.join("infinite.onnx"),
                ModelBuilder::new(17)
                    .input("x", data_type::FLOAT, &[1, 1, 28, 28])
                    .initializer(tensor_f32("w", &[784, 10], vec![1.0; 7840]))
                    .initializer(tensor_f32("zero", &[10], vec![0.0; 10]))
                    .node("Flatten", &["x"], &["f"], vec![])
                    .node("MatMul", &["f", "w"], &["z"], vec![])
                    .node("Div", &["z", "zero"], &["y"], vec![])
                    .output("y"),
            )),
            needles: vec![s("infinite.onnx"), s("NaN or infinite")],
        },
        Case {
            name: "a spec whose weights file is missing",
            args: model({
                let dd = d.join("noweights");
                std::fs::create_dir_all(&dd).unwrap();
                std::fs::copy(SPEC, dd.join("mnist-cnn.toml")).unwrap();
                p(&dd.join("mnist-cnn.toml"))
            }),
            needles: vec![s("mnist-cnn.safetensors")],
        },
        Case {
            name: "a spec that is not TOML",
            args: model(common::write(d, "broken.toml", "layers = [ { op = ")),
            needles: vec![s("broken.toml")],
        },
        Case {
            name: "a spec whose weights are cut short",
            args: model(spec_with_weights(d, "cutweights", weights[..weights.len() / 2].to_vec())),
            needles: vec![s("mnist-cnn.safetensors")],
        },
        Case {
            name: "a model that outputs NaN",
            args: model(spec_with_weights(d, "nanweights", nan_weights)),
            needles: vec![s("nanweights"), s("NaN")],
        },
        // Options
        Case { name: "negative ε", args: flags(&["--eps=-0.1"]), needles: vec![s("--eps"), s("-0.1")] },
        Case { name: "NaN ε", args: flags(&["--eps", "nan"]), needles: vec![s("--eps"), s("NaN")] },
        Case {
            name: "L∞ ε above the pixel range",
            args: flags(&["--eps", "1.5"]),
            needles: vec![s("1.5"), s("pixel range")],
        },
        Case { name: "an unknown attack", args: flags(&["--attack", "nosuch"]), needles: vec![s("nosuch")] },
        Case {
            name: "an unknown attack parameter",
            args: flags(&["--attack", "pgd:stepz=3"]),
            needles: vec![s("stepz")],
        },
        Case { name: "batch size 0", args: flags(&["--batch-size", "0"]), needles: vec![s("--batch-size")] },
        Case { name: "limit 0", args: flags(&["--limit", "0"]), needles: vec![s("--limit")] },
        Case { name: "threads 0", args: flags(&["--threads", "0"]), needles: vec![s("--threads")] },
        Case {
            name: "an output in a folder that does not exist",
            args: flags(&["--limit", "5", "--no-checks", "--output", &p(&d.join("no/such/dir/report.json"))]),
            needles: vec![s("report.json")],
        },
        Case {
            name: "a shard index beyond the count",
            args: flags(&["--shard", "4/4"]),
            needles: vec![s("--shard 4/4")],
        },
        Case { name: "zero shards", args: flags(&["--shards", "0"]), needles: vec![s("--shards 0")] },
        Case {
            name: "a gate on one shard",
            args: flags(&["--shard", "0/2", "--gate", "docs/gate.example.toml"]),
            needles: vec![s("--gate"), s("merge")],
        },
        Case {
            name: "a merge of a folder that is not a shard",
            args: ["merge", &p(&d.to_path_buf()), "--report-dir", &p(&d.join("merged"))]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            needles: vec![s("not a shard")],
        },
        Case {
            name: "a report folder that is a file",
            args: flags(&["--report-dir", &common::write(d, "afile", "x")]),
            needles: vec![s("afile")],
        },
        Case {
            name: "a gate rule naming an attack that does not run",
            args: flags(&[
                "--gate",
                &common::write(
                    d,
                    "gate.toml",
                    "[[rule]]\nmetric = \"robust_accuracy\"\nattack = \"apgd\"\neps = 0.1\nmin = 0.5\n",
                ),
            ]),
            needles: vec![s("apgd"), s("does not run")],
        },
        Case {
            name: "a baseline that is not a report",
            args: flags(&[
                "--gate",
                &common::write(d, "reg.toml", "[[rule]]\nmetric = \"regression\"\nmax_decrease_points = 1\n"),
                "--baseline",
                &common::write(d, "baseline.json", "{\"schema_version\": 2, \"tool\": \"é"),
            ]),
            needles: vec![s("baseline.json")],
        },
    ];
    #[cfg(unix)]
    {
        let l = d.join("loop");
        std::os::unix::fs::symlink(&l, &l).unwrap();
        v.push(Case { name: "a symlink loop", args: mnist(p(&l)), needles: vec![s("loop")] });
    }
    v
}

#[test]
fn every_bad_input_exits_2_with_one_line_and_writes_nothing() {
    let d = tmpdir("bad-inputs");
    let cases = cases(&d);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let out = d.join(format!("out-{i}"));
        let mut args = c.args.clone();
        if !args.iter().any(|a| a == "--report-dir") {
            args.extend(["--report-dir".into(), out.display().to_string()]);
        }
        args.push("--quiet".into());
        let o = Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(&args).env("RUST_BACKTRACE", "1").output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        let mut wrong = Vec::new();
        if o.status.code() != Some(2) {
            wrong.push(format!("exit {:?}", o.status.code()));
        }
        if e.contains("panicked") || e.contains("backtrace") || e.contains("RUST_BACKTRACE") {
            wrong.push("panicked".into());
        }
        if e.trim().lines().count() != 1 {
            wrong.push(format!("{} lines", e.trim().lines().count()));
        }
        for n in &c.needles {
            if !e.contains(n.as_str()) {
                wrong.push(format!("no `{n}`"));
            }
        }
        if out.exists() {
            wrong.push("left a report folder".into());
        }
        if !o.stdout.is_empty() {
            wrong.push("printed a report".into());
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {} — {}", c.name, wrong.join(", "), e.trim()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Reports read back are untrusted: a provenance hash cut inside a UTF-8 character, or any other
/// damage, never panics `verify` or `diff`.
#[test]
fn damaged_reports_never_panic_verify_or_diff() {
    let d = tmpdir("bad-reports");
    let report = d.join("report.json");
    let o = common::gauntlet(&[
        "run",
        "--limit",
        "5",
        "--attack",
        "fgsm",
        "--no-checks",
        "--quiet",
        "--output",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let text = std::fs::read_to_string(&report).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["provenance"]["model_files"][0]["sha256"] = "éééééééééééééééé".into();
    v["provenance"]["config_sha256"] = "é".into();
    let damaged = d.join("damaged.json");
    std::fs::write(&damaged, serde_json::to_string(&v).unwrap()).unwrap();
    let o = common::gauntlet(&["verify", damaged.to_str().unwrap()]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(common::stdout(&o).contains("CHANGED  model"), "{}", common::stdout(&o));
    assert!(!e.contains("panicked"), "{e}");
    let o = common::gauntlet(&["diff", report.to_str().unwrap(), damaged.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    // Prefixes of the report: an input error, never a panic.
    // Every cut ends before the closing brace, so no prefix is a whole report.
    let body = text.trim_end();
    for cut in (0..body.len()).step_by(body.len() / 7) {
        let bytes = &text.as_bytes()[..cut];
        std::fs::write(&damaged, bytes).unwrap();
        let o = common::gauntlet(&["diff", report.to_str().unwrap(), damaged.to_str().unwrap()]);
        let e = common::stderr(&o);
        assert_eq!(o.status.code(), Some(2), "cut at {cut}: {e}");
        assert!(!e.contains("panicked") && e.contains("damaged.json"), "cut at {cut}: {e}");
    }
}
