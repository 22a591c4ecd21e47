//! An attack defined outside Gauntlet, registered through the library API and run through the same
//! evaluator, integrity checks and report as the built-in ones.
//!
//! `cargo run --release --example custom_attack -- [SAMPLES]`
//!
//! The attack here, `corners`, is a gradient-free baseline: it tries `draws` random corners of the
//! L∞ ball (every pixel moved by ±ε) and keeps the first that fools the model. Everything it returns
//! is re-projected, re-checked and re-classified by the evaluator, like any other attack's output.

use candle_core::{Device, Tensor};
use gauntlet::attacks::{Attack, AttackBatch, AttackKind, AttackOutput, Cost, Params, Registry, ThreatModel};
use gauntlet::checks;
use gauntlet::datasets::samples;
use gauntlet::eval::{evaluate, EvalConfig, Silent};
use gauntlet::models::{predictions, zoo, Classifier};
use gauntlet::report::{DatasetInfo, Meta, ModelInfo, Report, RunInfo};
use rand::Rng;

/// Random corners of the ε-ball.
#[derive(Debug)]
struct Corners {
    draws: usize,
}

impl Attack for Corners {
    fn name(&self) -> &str {
        "corners"
    }

    fn params(&self) -> String {
        format!("draws={}", self.draws)
    }

    fn kind(&self) -> AttackKind {
        AttackKind::GradientFree
    }

    fn run(
        &self,
        model: &dyn Classifier,
        batch: &AttackBatch<'_>,
        threat: &ThreatModel,
    ) -> gauntlet::attacks::Result<AttackOutput> {
        let n = batch.len();
        let x0 = batch.x0.to_device(&Device::Cpu)?.flatten_from(1)?.to_vec2::<f32>()?;
        let mut best = x0.clone();
        let mut reached = vec![false; n];
        let mut steps = vec![None; n];
        let mut cost = Cost::default();
        for d in 0..self.draws {
            // The per-sample random streams make results independent of batching.
            let key = batch.noise_key(d as u64);
            let rows: Vec<f32> = (0..n)
                .flat_map(|i| {
                    let mut rng = key.rng(batch.ids[i]);
                    x0[i].iter().map(move |&v| v + if rng.random::<bool>() { 1.0 } else { -1.0 } * threat.eps as f32)
                })
                .collect();
            let x = Tensor::from_vec(rows, batch.x0.shape(), &Device::Cpu)?.to_device(batch.x0.device())?;
            let x = threat.project(batch.x0, &x)?;
            let preds = predictions(&model.logits(&x)?)?;
            cost.forwards += n as u64;
            let candidates = x.to_device(&Device::Cpu)?.flatten_from(1)?.to_vec2::<f32>()?;
            for i in 0..n {
                if !reached[i] && batch.goal.achieved(i, preds[i]) {
                    reached[i] = true;
                    steps[i] = Some(d as u32 + 1);
                    best[i] = candidates[i].clone();
                }
            }
        }
        let x_adv = Tensor::from_vec(best.concat(), batch.x0.shape(), &Device::Cpu)?.to_device(batch.x0.device())?;
        Ok(AttackOutput { x_adv, steps, reached, cost })
    }
}

fn main() -> anyhow::Result<()> {
    let samples_wanted: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(200);

    // The built-in attacks plus ours, under its own name and with its own parameters.
    let mut registry = Registry::default();
    registry.register("corners", "random corners of the L∞ ball (user-defined)", |mut p: Params| {
        let draws = p.take_usize("draws")?.unwrap_or(20);
        p.finish(&["draws"])?;
        Ok(Box::new(Corners { draws }))
    });

    let model = zoo::mnist_cnn(&Device::Cpu)?;
    let mut data = samples::mnist_test_1k()?;
    data.truncate(samples_wanted);
    let cfg = EvalConfig {
        attacks: vec![registry.create("corners:draws=20")?, registry.create("pgd")?],
        norm: gauntlet::attacks::Norm::Linf,
        eps: vec![0.1, 0.2, 0.3],
        seed: 0,
        batch_size: 256,
        targets: None,
        cascade: false,
    };
    let ev = evaluate(&model, &data, &cfg, &Silent)?;
    let meta = Meta {
        model: ModelInfo {
            source: zoo::MNIST_CNN.into(),
            input: model.input_shape(),
            classes: model.num_classes(),
            parameters: model.parameter_count(),
            preprocessing: "none".into(),
        },
        dataset: DatasetInfo { source: data.source.clone(), samples: data.labels.len() },
        seed: cfg.seed,
        bounds: [0.0, 1.0],
        run: RunInfo {
            device: "cpu".into(),
            threads: candle_core::utils::get_num_threads(),
            batch_size: cfg.batch_size,
            time_s: ev.total_seconds,
            clean_time_s: ev.clean_seconds,
        },
    };
    let mut report = Report::new(&ev, meta);
    report.checks = checks::run(&model, &data, &cfg, &ev, &registry, 100)?;
    print!("{}", report.to_table());
    Ok(())
}
