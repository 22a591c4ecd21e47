//! Times an ONNX model on a labelled `.npz` batch, as the Gauntlet side of
//! `benches/compare/nets.sh`: forward + input-gradient passes at several batch sizes (median of
//! `--repeats`), and PGD through the attack registry on the whole set (median of `--repeats`).
//! Prints one JSON object per figure.
//!
//! usage: cargo run --release --example onnx_timing -- MODEL.onnx DATA.npz
//!        [--what passes|pgd|all] [--batches 1,32,128] [--eps 0.0001] [--steps 10] [--repeats 5]
//!        [--node-by-node] [--device cpu|cuda[:N]|auto]

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};
use gauntlet::attacks::{AttackBatch, Norm, Registry, ThreatModel};
use gauntlet::eval::batch_tensor;
use gauntlet::models::onnx::OnnxModel;
use gauntlet::models::{Bounds, Classifier, Goal, LoadOptions, Loss};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: onnx_timing MODEL.onnx DATA.npz [--what passes|pgd|all] [--batches 1,32,128] [--eps E] [--steps S] [--repeats R] [--node-by-node] [--device D]";
    let (Some(model_path), Some(data_path)) = (args.first(), args.get(1)) else { anyhow::bail!(usage) };
    let what = arg(&args, "--what").unwrap_or("all");
    let repeats: usize = arg(&args, "--repeats").map_or(Ok(5), str::parse)?;
    let eps: f64 = arg(&args, "--eps").map_or(Ok(1e-4), str::parse)?;
    let steps: usize = arg(&args, "--steps").map_or(Ok(10), str::parse)?;
    let batches: Vec<usize> =
        arg(&args, "--batches").unwrap_or("1,32,128").split(',').map(str::parse).collect::<Result<_, _>>()?;
    let opts = LoadOptions { node_by_node: args.iter().any(|a| a == "--node-by-node"), ..Default::default() };
    let (device, warning) = gauntlet::models::device::resolve(arg(&args, "--device").unwrap_or("cpu"))?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let model = OnnxModel::load(Path::new(model_path), &device, &opts)?;
    let executor = match model.executor() {
        Ok(e) => format!("compiled ({} kernels, {:.2} GFLOP per image)", e.describe().len(), e.flops() / 1e9),
        Err(why) => format!("node by node ({why})"),
    };
    let data = gauntlet::datasets::open(Path::new(data_path))?;
    let threads = rayon::current_num_threads();
    let device_name = gauntlet::models::device::name(&device);
    println!(
        "{{\"side\":\"gauntlet\",\"what\":\"setup\",\"executor\":{executor:?},\"threads\":{threads},\"device\":{device_name:?}}}"
    );
    let n = data.labels.len();
    let all: Vec<usize> = (0..n).collect();
    if what == "passes" || what == "all" {
        for &b in &batches {
            let idx: Vec<usize> = (0..b).map(|i| i % n).collect();
            let x = batch_tensor(&data, &idx, &device)?;
            let goal = Goal::untargeted(idx.iter().map(|&i| data.labels[i]).collect());
            model.loss_and_grad(&x, &goal, Loss::CrossEntropy)?;
            device.synchronize()?;
            let mut times = Vec::new();
            for _ in 0..repeats {
                let t = Instant::now();
                model.loss_and_grad(&x, &goal, Loss::CrossEntropy)?;
                // A GPU runs the pass asynchronously: the time is the time until it is done.
                device.synchronize()?;
                times.push(t.elapsed().as_secs_f64());
            }
            let s = median(times);
            println!(
                "{{\"side\":\"gauntlet\",\"what\":\"forward+grad\",\"batch\":{b},\"ms\":{:.3},\"images_per_s\":{:.1}}}",
                s * 1e3,
                b as f64 / s
            );
        }
    }
    if let (Some(b), Ok(engine)) = (arg(&args, "--profile").map(str::parse::<usize>).transpose()?, model.executor()) {
        // Per kernel of the plan, forward and backward, summed over `repeats` passes at batch b.
        let idx: Vec<usize> = (0..b).map(|i| i % n).collect();
        let x: Vec<f32> = batch_tensor(&data, &idx, &Device::Cpu)?.flatten_all()?.to_vec1()?;
        let mut total: Vec<(String, f64, f64)> = engine.profile(b, &x);
        total.iter_mut().for_each(|t| (t.1, t.2) = (0.0, 0.0));
        for _ in 0..repeats {
            for (t, p) in total.iter_mut().zip(engine.profile(b, &x)) {
                t.1 += p.1;
                t.2 += p.2;
            }
        }
        let sum: f64 = total.iter().map(|t| t.1 + t.2).sum();
        let mut kinds: Vec<(String, f64, f64)> = Vec::new();
        for (d, f, bw) in total {
            let kind = d.split(['(', ' ']).next().unwrap_or("").to_string();
            let kind = if d.starts_with("conv") {
                format!("conv {}", d.split_whitespace().nth(1).unwrap_or(""))
            } else {
                kind
            };
            let kind = if d.contains("Depthwise") { "conv depthwise".to_string() } else { kind };
            match kinds.iter_mut().find(|k| k.0 == kind) {
                Some(k) => (k.1, k.2) = (k.1 + f, k.2 + bw),
                None => kinds.push((kind, f, bw)),
            }
        }
        kinds.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)));
        for (k, f, bw) in kinds {
            println!(
                "{{\"side\":\"gauntlet\",\"what\":\"profile\",\"batch\":{b},\"kernel\":{k:?},\"forward_share\":{:.3},\"backward_share\":{:.3}}}",
                f / sum,
                bw / sum
            );
        }
    }
    if what == "pgd" || what == "all" {
        let x = batch_tensor(&data, &all, &device)?.to_dtype(DType::F32)?;
        let goal = Goal::untargeted(data.labels.clone());
        let ids: Vec<u64> = (0..n as u64).collect();
        let attack = Registry::default().create(&format!("pgd:steps={steps}"))?;
        let threat = ThreatModel::new(Norm::Linf, eps, Bounds::default())?;
        let batch = AttackBatch { x0: &x, goal: &goal, ids: &ids, seed: 0, stream: 0 };
        let mut times = Vec::new();
        let mut reached = 0;
        for _ in 0..repeats {
            let t = Instant::now();
            let out = attack.run(&model, &batch, &threat)?;
            device.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
            reached = out.reached.iter().filter(|&&r| r).count();
        }
        println!(
            "{{\"side\":\"gauntlet\",\"what\":\"pgd\",\"images\":{n},\"steps\":{steps},\"eps\":{eps},\"s\":{:.3},\"broken\":{reached}}}",
            median(times)
        );
    }
    Ok(())
}
