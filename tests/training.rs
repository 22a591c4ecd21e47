//! `gauntlet train` and the compiled executor's training mode: weight gradients against
//! candle's autograd through the layers (an independent implementation) and f64 finite
//! differences; the same seed gives the same weights whatever the thread count; a run killed
//! after an epoch resumes to the uninterrupted run's weights; a checkpoint of other settings is
//! refused; adversarial training buys robustness that standard training does not.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor, Var};
use gauntlet::models::{objective, Goal, Loss, ModelSpec};
use gauntlet::train::method::cross_entropy;

use common::{assert_input_error, gauntlet, stderr, tmpdir, write, MNIST};

/// Every kernel form the training mode has: a strided, padded convolution with a fused ReLU, a
/// grouped one, a 1×1 one, pooling between, a dense layer with a fused ReLU and a plain one;
/// the model normalizes inside.
const ARCH: &str = r#"
input = [2, 9, 9]
classes = 5
mean = [0.4, 0.5]
std = [0.3, 0.2]
layers = [
  { op = "conv2d", weight = "c1", out = 4, kernel = 3, stride = 2, padding = 1 }, { op = "relu" },
  { op = "conv2d", weight = "c2", out = 4, kernel = 3, padding = 1, groups = 2 }, { op = "leaky_relu", slope = 0.1 },
  { op = "conv2d", weight = "c3", out = 6, kernel = 1 },
  { op = "maxpool2d", kernel = 2 },
  { op = "flatten" },
  { op = "linear", weight = "f1", out = 7 }, { op = "relu" },
  { op = "linear", weight = "f2", out = 5 },
]
"#;

fn images(n: usize, len: usize, seed: u64) -> Vec<f32> {
    let mut s = 0x2545_F491_4F6C_DD1Du64 ^ seed;
    (0..n * len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

#[test]
fn weight_gradients_match_autograd_and_finite_differences() {
    let spec = ModelSpec::parse(ARCH, Path::new("arch.toml")).unwrap();
    let init = spec.init_weights(3).unwrap();
    let n = 6;
    let x = Tensor::from_vec(images(n, 2 * 81, 1), (n, 2, 9, 9), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 5).collect();

    // The compiled plan's training mode.
    let model = spec.build(&init, Path::new("arch.toml"), DType::F32, &Device::Cpu).unwrap();
    assert!(model.executor().is_ok(), "{:?}", model.executor().err());
    let (logits, grads) = model.parameter_grads(&x, |z| cross_entropy(z, &labels).1).unwrap();
    assert_eq!(grads.len(), 5);

    // candle's autograd through the layers, with the weights as variables.
    let mut names: Vec<String> = init.keys().cloned().collect();
    names.sort();
    let vars: HashMap<String, Var> = names.iter().map(|k| (k.clone(), Var::from_tensor(&init[k]).unwrap())).collect();
    let tracked: HashMap<String, Tensor> = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    let layered = spec.build(&tracked, Path::new("arch.toml"), DType::F32, &Device::Cpu).unwrap();
    assert!(layered.executor().is_err(), "trained weights run layer by layer");
    let z = gauntlet::models::Classifier::logits(&layered, &x).unwrap();
    let max_logit = flat(&z).iter().zip(&logits).map(|(a, &b)| (a - b as f64).abs()).fold(0f64, f64::max);
    assert!(max_logit < 1e-5, "logits differ by {max_logit}");
    let loss = objective(&z, &Goal::untargeted(labels.clone()), Loss::CrossEntropy).unwrap().mean_all().unwrap();
    let reference = loss.backward().unwrap();
    let layers = ["c1", "c2", "c3", "f1", "f2"];
    for (g, name) in grads.iter().zip(layers) {
        for (what, ours) in [("weight", &g.weight), ("bias", &g.bias)] {
            let key = format!("{name}.{what}");
            let theirs = flat(reference.get(vars[&key].as_tensor()).unwrap());
            let scale = theirs.iter().fold(0f64, |m, v| m.max(v.abs()));
            let worst = ours.iter().zip(&theirs).map(|(&a, b)| (a as f64 - b).abs()).fold(0f64, f64::max);
            assert!(scale > 1e-6, "{key}: the gradient is zero");
            assert!(worst <= 1e-4 * scale, "{key}: differs from autograd by {worst:e} (scale {scale:e})");
        }
    }

    // f64 finite differences of the mean cross-entropy, layer by layer in f64, on a few weights.
    let init64: HashMap<String, Tensor> =
        init.iter().map(|(k, v)| (k.clone(), v.to_dtype(DType::F64).unwrap())).collect();
    let x64 = x.to_dtype(DType::F64).unwrap();
    let loss_at = |w: &HashMap<String, Tensor>| {
        let m = spec.build(w, Path::new("arch.toml"), DType::F64, &Device::Cpu).unwrap();
        let z = gauntlet::models::Classifier::logits(&m, &x64).unwrap();
        let z64 = flat(&z);
        let k = z64.len() / n;
        z64.chunks(k)
            .zip(&labels)
            .map(|(r, &y)| {
                let mx = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = r.iter().map(|v| (v - mx).exp()).sum::<f64>().ln() + mx;
                lse - r[y as usize]
            })
            .sum::<f64>()
            / n as f64
    };
    for (li, name) in layers.iter().enumerate() {
        let key = format!("{name}.weight");
        let len = init64[&key].elem_count();
        for idx in [0, len / 3, len - 1] {
            let h = 1e-6;
            let bump = |d: f64| {
                let mut w = init64.clone();
                let mut v = flat(&w[&key]);
                v[idx] += d;
                w.insert(key.clone(), Tensor::from_vec(v, w[&key].shape(), &Device::Cpu).unwrap());
                loss_at(&w)
            };
            let numeric = (bump(h) - bump(-h)) / (2.0 * h);
            let ours = grads[li].weight[idx] as f64;
            assert!(
                (ours - numeric).abs() <= 1e-4 + 1e-3 * numeric.abs(),
                "{key}[{idx}]: {ours} vs finite differences {numeric}"
            );
        }
    }
}

const SMALL: &str = r#"
input = [1, 28, 28]
classes = 10
mean = [0.1307]
std = [0.3081]
layers = [
  { op = "conv2d", weight = "conv1", out = 8, kernel = 4, stride = 2, padding = 1 }, { op = "relu" },
  { op = "conv2d", weight = "conv2", out = 16, kernel = 4, stride = 2, padding = 1 }, { op = "relu" },
  { op = "flatten" },
  { op = "linear", weight = "fc1", out = 32 }, { op = "relu" },
  { op = "linear", weight = "fc2", out = 10 },
]
"#;

fn train_args<'a>(spec: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--spec",
        spec,
        "--dataset",
        MNIST,
        "--out",
        out,
        "--holdout",
        "200",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--adversarial",
        "pgd",
        "--eps",
        "0.1",
        "--steps",
        "3",
        "--val-steps",
        "5",
        "--lr",
        "0.002",
        "--quiet",
    ];
    a.extend_from_slice(extra);
    a
}

fn with_epochs<'a>(mut args: Vec<&'a str>, epochs: &'a str) -> Vec<&'a str> {
    let i = args.iter().position(|a| *a == "--epochs").unwrap();
    args[i + 1] = epochs;
    args
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn same_seed_same_weights_any_thread_count_and_resume_after_kill() {
    let dir = tmpdir("train-determinism");
    let spec = write(&dir, "small.arch.toml", SMALL);
    let out = |n: &str| dir.join(n).display().to_string();
    let (a, b, c) = (out("a.toml"), out("b.toml"), out("c.toml"));
    let o = gauntlet(&train_args(&spec, &a, &["--threads", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gauntlet(&train_args(&spec, &b, &["--threads", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        bytes(&dir.join("a.safetensors")),
        bytes(&dir.join("b.safetensors")),
        "thread count changed the weights"
    );
    let card = std::fs::read_to_string(dir.join("a.md")).unwrap();
    assert!(card.contains("PGD adversarial training") && card.contains("| 2 |"), "{card}");
    assert!(!dir.join("a.checkpoint").exists(), "a finished run removes its checkpoint");

    // Killed as soon as the first epoch's checkpoint is there, then resumed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(train_args(&spec, &c, &[])).spawn().unwrap();
    let manifest = dir.join("c.checkpoint/state.json");
    let start = Instant::now();
    while !manifest.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint after the first epoch");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = gauntlet(&train_args(&spec, &c, &["--resume"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    if dir.join("c.checkpoint").exists() || !log.contains("epoch 2/2") {
        panic!("resume did not finish the run: {log}");
    }
    assert_eq!(
        bytes(&dir.join("a.safetensors")),
        bytes(&dir.join("c.safetensors")),
        "the resumed run's weights differ"
    );
}

#[test]
fn a_checkpoint_of_other_settings_is_refused_by_name() {
    let spec = write(&tmpdir("train-refuse"), "small.arch.toml", SMALL);
    // A checkpoint from one run, resumed with another learning rate.
    let dir2 = tmpdir("train-refuse-2");
    let out2 = dir2.join("n.toml").display().to_string();
    let ck2 = dir2.join("ck").display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(with_epochs(train_args(&spec, &out2, &["--checkpoint-dir", &ck2]), "3"))
        .spawn()
        .unwrap();
    let manifest = Path::new(&ck2).join("state.json");
    let start = Instant::now();
    while !manifest.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint after the first epoch");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut args = with_epochs(train_args(&spec, &out2, &["--checkpoint-dir", &ck2, "--resume"]), "3");
    let lr = args.iter().position(|a| *a == "--lr").unwrap();
    args[lr + 1] = "0.01";
    let o = gauntlet(&args);
    assert_input_error(&o, &["state.json", "other settings", "lr (0.002 then, 0.01 now)"]);
    assert!(!dir2.join("n.safetensors").exists(), "nothing written");
}

#[test]
fn bad_training_flags_exit_2_with_one_line() {
    let dir = tmpdir("train-flags");
    let spec = write(&dir, "small.arch.toml", SMALL);
    let out = dir.join("m.toml").display().to_string();
    let base = ["train", "--spec", spec.as_str(), "--dataset", MNIST, "--out", out.as_str()];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        gauntlet(&a)
    };
    assert_input_error(&with(&["--adversarial", "pgd"]), &["--adversarial needs", "--eps"]);
    assert_input_error(&with(&["--eps", "0.3"]), &["--eps needs --adversarial"]);
    assert_input_error(&with(&["--adversarial", "pgd", "--eps=-1"]), &["--eps", "positive"]);
    assert_input_error(&with(&["--holdout", "5000"]), &["--holdout 5000"]);
    assert_input_error(&with(&["--adversarial", "madry", "--eps", "0.3"]), &["madry"]);
    assert!(!dir.join("m.safetensors").exists());
}

/// On 900 MNIST images, five epochs of PGD training at ε = 0.1 hold far more of the held-out
/// images against PGD than the same epochs of standard training, at a similar clean accuracy.
#[test]
fn adversarial_training_buys_robustness() {
    let dir = tmpdir("train-robust");
    let spec = write(&dir, "small.arch.toml", SMALL);
    let run = |name: &str, adversarial: &[&str]| -> (f64, f64) {
        let out = dir.join(name).display().to_string();
        let mut a = vec![
            "train",
            "--spec",
            &spec,
            "--dataset",
            MNIST,
            "--out",
            &out,
            "--holdout",
            "100",
            "--epochs",
            "6",
            "--batch-size",
            "30",
            "--lr",
            "0.003",
            "--quiet",
        ];
        a.extend_from_slice(adversarial);
        let o = gauntlet(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        let eval = gauntlet(&[
            "run",
            "--model",
            &out,
            "--dataset",
            MNIST,
            "--attack",
            "pgd:steps=20",
            "--eps",
            "0.1",
            "--format",
            "json",
            "--quiet",
            "--no-checks",
            "--exit-zero",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
        (v["clean_accuracy"].as_f64().unwrap(), v["results"][0]["robust_accuracy"].as_f64().unwrap())
    };
    let (clean_std, robust_std) = run("std.toml", &[]);
    let (clean_adv, robust_adv) = run("adv.toml", &["--adversarial", "pgd", "--eps", "0.1", "--steps", "7"]);
    assert!(clean_std > 0.8 && clean_adv > 0.7, "clean {clean_std} / {clean_adv}");
    assert!(robust_adv > robust_std + 0.2, "PGD accuracy: adversarial {robust_adv}, standard {robust_std}");
}
