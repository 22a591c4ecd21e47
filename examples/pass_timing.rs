//! Times one forward and one forward + input-gradient pass of a model on the shipped MNIST images,
//! as the Gauntlet side of `benches/compare/run.sh`.
//!
//! With `--scaling`, it also times forward + input-gradient passes alternately on a 1-thread and a
//! 2-thread pool in this one process (15 each) and prints the medians and their ratio.
//!
//! usage: cargo run --release --example pass_timing -- MODEL.toml [BATCH] [--scaling]

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};
use gauntlet::datasets::samples;
use gauntlet::eval::batch_tensor;
use gauntlet::models::{load_model, Classifier, Goal, Loss};

fn median_ms(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..12)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .skip(2)
        .collect();
    times.sort_by(f64::total_cmp);
    (times[4] + times[5]) / 2.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_path = args.first().ok_or_else(|| anyhow::anyhow!("usage: pass_timing MODEL.toml [BATCH]"))?;
    let batch: usize = args.get(1).filter(|a| !a.starts_with("--")).map(|b| b.parse()).transpose()?.unwrap_or(256);
    let model = load_model(Path::new(model_path), DType::F32, &Device::Cpu)?;
    let data = samples::mnist_test_1k()?;
    let idx: Vec<usize> = (0..batch).map(|i| i % data.labels.len()).collect();
    let x = batch_tensor(&data, &idx, &Device::Cpu)?;
    let goal = Goal::untargeted(idx.iter().map(|&i| data.labels[i]).collect());
    let forward = median_ms(|| {
        model.logits(&x).unwrap();
    });
    let gradient = median_ms(|| {
        model.loss_and_grad(&x, &goal, Loss::CrossEntropy).unwrap();
    });
    println!(
        "{{\"side\": \"gauntlet\", \"batch\": {batch}, \"threads\": {}, \"ms\": {{\"forward\": {forward:.3}, \"forward+grad\": {gradient:.3}}}}}",
        candle_core::utils::get_num_threads()
    );
    if args.iter().any(|a| a == "--scaling") {
        let pools = [1, 2].map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("thread pool"));
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..16 {
            for (pool, t) in pools.iter().zip(&mut times) {
                let start = Instant::now();
                pool.install(|| model.loss_and_grad(&x, &goal, Loss::CrossEntropy).map(|_| ()))?;
                t.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let [one, two] = times.map(|mut t| {
            t.remove(0);
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        });
        println!(
            "{{\"side\": \"gauntlet\", \"batch\": {batch}, \"scaling\": {{\"1 thread ms\": {one:.3}, \"2 threads ms\": {two:.3}, \"speed-up\": {:.2}}}}}",
            one / two
        );
    }
    Ok(())
}
