//! `gauntlet train`: plain supervised training of a spec'd architecture (AdamW, cross-entropy),
//! enough to produce real models to evaluate; weights written as safetensors, spec beside them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::datasets::{self, ImageSet};
use crate::eval::batch_tensor;
use crate::models::{objective, predictions, Classifier, Goal, LayerSpec, Loss, ModelSpec, Sequential};
use crate::report::write::write_atomic;

use crate::cli::config::set_threads;
use crate::cli::{ExitStatus, TrainArgs};

pub fn run(args: &TrainArgs) -> anyhow::Result<ExitStatus> {
    set_threads(args.threads)?;
    let device = Device::Cpu;
    let mut spec = ModelSpec::read(&args.spec)?;
    let mut data = datasets::open(&args.dataset)?;
    if let Some(n) = args.limit {
        data.truncate(n);
    }
    data.validate(spec.input, spec.classes)?;
    let test = args.test.as_deref().map(datasets::open).transpose()?;
    if let Some(t) = &test {
        t.validate(spec.input, spec.classes)?;
    }
    if args.out.extension().is_none_or(|e| e != "toml") {
        bail!("{}: --out names the spec to write and must end in .toml", args.out.display());
    }
    if args.batch_size == 0 || args.epochs == 0 {
        bail!("--batch-size and --epochs must be at least 1");
    }

    let init = spec.init_weights(args.seed)?;
    let mut names: Vec<String> = init.keys().cloned().collect();
    names.sort();
    let vars: Vec<Var> = names.iter().map(|n| Var::from_tensor(&init[n])).collect::<Result<_, _>>()?;
    let tensors: HashMap<String, Tensor> =
        names.iter().zip(&vars).map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
    let model = spec.build(&tensors, &args.spec, DType::F32, &device)?;
    let mut opt = AdamW::new(vars.clone(), ParamsAdamW { lr: args.lr, weight_decay: 0.0, ..Default::default() })?;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let mut order: Vec<usize> = (0..data.labels.len()).collect();
    for epoch in 1..=args.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut seen, mut correct) = (0f64, 0usize, 0usize);
        for chunk in order.chunks(args.batch_size) {
            let x = batch_tensor(&data, chunk, &device)?;
            let goal = Goal::untargeted(chunk.iter().map(|&i| data.labels[i]).collect());
            let logits = model.logits(&x)?;
            let loss = objective(&logits, &goal, Loss::CrossEntropy)?.mean_all()?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            seen += chunk.len();
            correct += predictions(&logits)?.iter().zip(&goal.classes).filter(|(p, l)| p == l).count();
        }
        let mut line = format!(
            "epoch {epoch}/{}: loss {:.4}, train accuracy {:.2}%",
            args.epochs,
            loss_sum / seen as f64,
            100.0 * correct as f64 / seen as f64
        );
        if let Some(t) = &test {
            line += &format!(", test accuracy {:.2}%", 100.0 * accuracy(&model, t)?);
        }
        eprintln!("{line}");
    }

    let weights_path = args.out.with_extension("safetensors");
    let file_name = weights_path.file_name().context("--out has no file name")?.to_string_lossy().into_owned();
    let trained: HashMap<String, Tensor> =
        names.iter().zip(&vars).map(|(n, v)| (n.clone(), v.as_tensor().detach())).collect();
    let bytes = safetensors_bytes(&trained)?;
    spec.weights = Some(file_name);
    for layer in &mut spec.layers {
        // Shapes now come from the weights.
        if let LayerSpec::Conv2d { out, kernel, .. } = layer {
            *out = None;
            *kernel = None;
        } else if let LayerSpec::Linear { out, .. } = layer {
            *out = None;
        }
    }
    let toml = toml::to_string(&spec).context("cannot serialize the spec")?;
    write_atomic(&weights_path, &bytes)?;
    write_atomic(&args.out, toml.as_bytes())?;
    eprintln!("wrote {} and {}", args.out.display(), weights_path.display());
    Ok(ExitStatus::Ok)
}

/// Accuracy of a model on a dataset.
fn accuracy(model: &Sequential, data: &ImageSet) -> anyhow::Result<f64> {
    let idx: Vec<usize> = (0..data.labels.len()).collect();
    let mut correct = 0;
    for chunk in idx.chunks(500) {
        let preds = predictions(&model.logits(&batch_tensor(data, chunk, model.device())?)?)?;
        correct += chunk.iter().zip(preds).filter(|(&i, p)| data.labels[i] == *p).count();
    }
    Ok(correct as f64 / data.labels.len().max(1) as f64)
}

fn safetensors_bytes(tensors: &HashMap<String, Tensor>) -> anyhow::Result<Vec<u8>> {
    let tmp = std::env::temp_dir().join(format!("gauntlet-weights-{}.safetensors", std::process::id()));
    candle_core::safetensors::save(tensors, &tmp)?;
    let bytes = std::fs::read(&tmp)?;
    let _ = std::fs::remove_file(Path::new(&tmp));
    Ok(bytes)
}
