//! `gauntlet train`: plain or adversarial training of a spec'd architecture on the compiled
//! executor (the library's [`crate::train`]); the spec, its safetensors weights and a model card
//! (Markdown) are written at the end, a checkpoint after every epoch.

use std::path::PathBuf;

use anyhow::bail;

use crate::cli::config::set_threads;
use crate::cli::progress::Bar;
use crate::cli::{interrupt, ExitStatus, TrainArgs};
use crate::datasets;
use crate::models::ModelSpec;
use crate::report::write::write_atomic;
use crate::train::{default_holdout, hold_out, EpochRecord, Method, Objective, TrainConfig, Trained};

pub fn run(args: &TrainArgs) -> anyhow::Result<ExitStatus> {
    set_threads(args.threads)?;
    if args.out.extension().is_none_or(|e| e != "toml") {
        bail!("{}: --out names the spec to write and must end in .toml", args.out.display());
    }
    let method = args.adversarial.unwrap_or(Method::Standard);
    let eps = match (method, args.eps) {
        (Method::Standard, Some(_)) => bail!("--eps needs --adversarial pgd|fgsm-rs|trades"),
        (Method::Standard, None) => 0.0,
        (_, Some(e)) => e,
        (_, None) => bail!("--adversarial needs the training budget --eps (e.g. 0.3 for MNIST, 8/255 for CIFAR-10)"),
    };
    if method != Method::Standard && !(eps.is_finite() && eps > 0.0) {
        bail!("--eps {eps}: adversarial training needs a positive budget");
    }
    let spec = ModelSpec::read(&args.spec)?;
    let mut data = datasets::open(&args.dataset)?;
    if let Some(n) = args.limit {
        data.truncate(n);
    }
    let (train, validation, validation_source) = match &args.test {
        Some(path) => (data, datasets::open(path)?, path.display().to_string()),
        None => {
            let n = args.holdout.unwrap_or_else(|| default_holdout(data.labels.len()));
            let (t, v) = hold_out(data, n, args.seed)?;
            (t, v, format!("{n} samples held out of the training data"))
        }
    };
    let checkpoint = args.checkpoint_dir.clone().unwrap_or_else(|| args.out.with_extension("checkpoint"));
    let config = TrainConfig {
        spec,
        spec_path: args.spec.clone(),
        train,
        validation,
        validation_source,
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer: args.optimizer,
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        schedule: args.lr_schedule,
        seed: args.seed,
        objective: Objective::new(method, eps, args.steps, args.step, Some(args.beta)),
        eps_ramp: args.eps_ramp,
        val_steps: if method == Method::Standard { 0 } else { args.val_steps },
        checkpoint: Some(checkpoint.clone()),
        resume: args.resume,
    };
    interrupt::install();
    let bar = Bar::new(args.quiet);
    let epochs = args.epochs;
    let trained = config.run(&bar, &mut |r: &EpochRecord| eprintln!("{}", epoch_line(r, epochs)))?;
    let (spec_path, weights_path) = trained.write(&args.out)?;
    let card_path = args.out.with_extension("md");
    write_atomic(&card_path, card(&config, &trained, &args.out).as_bytes())?;
    eprintln!("wrote {}, {} and {}", spec_path.display(), weights_path.display(), card_path.display());
    // The run is complete: its checkpoint is no longer needed.
    let _ = std::fs::remove_dir_all(&checkpoint);
    Ok(ExitStatus::Ok)
}

fn epoch_line(r: &EpochRecord, epochs: usize) -> String {
    let mut line = format!(
        "epoch {}/{epochs}: loss {:.4}, train accuracy {:.2}%, validation clean {:.2}%",
        r.epoch,
        r.loss,
        100.0 * r.train_accuracy,
        100.0 * r.validation_clean
    );
    if let Some(rob) = r.validation_robust {
        line += &format!(", PGD {:.2}% (training ε {:.4})", 100.0 * rob, r.eps);
    }
    line + &format!(" · {:.0} s", r.seconds)
}

/// The command line as typed, for the card.
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = PathBuf::from(&*first).file_name().map_or("gauntlet".into(), |f| f.to_string_lossy().into_owned());
    }
    args.join(" ")
}

/// The model card: architecture, data, the exact command, time and the epochs' numbers.
fn card(config: &TrainConfig, trained: &Trained, out: &std::path::Path) -> String {
    let name = out.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let o = &config.objective;
    let mut s = format!("# {name}\n\n");
    s += "## Architecture\n\n";
    s += &format!("Input {:?} (C, H, W), {} classes", config.spec.input, config.spec.classes);
    if let (Some(m), Some(sd)) = (&config.spec.mean, &config.spec.std) {
        s += &format!(", normalized inside the model (mean {m:?}, std {sd:?})");
    }
    let params: usize = trained.weights.values().map(|t| t.elem_count()).sum();
    s += &format!(
        "; {params} parameters. Layers:\n\n```toml\n{}```\n\n",
        toml::to_string(&trained.spec).unwrap_or_default()
    );
    s += "## Data\n\n";
    s += &format!(
        "Training: {} ({} samples). Validation: {} ({} samples).\n\n",
        config.train.source,
        config.train.labels.len(),
        config.validation_source,
        config.validation.labels.len()
    );
    s += "## Training\n\n";
    let method = match o.method {
        Method::Standard => "standard (cross-entropy on clean inputs)".to_string(),
        Method::Pgd => format!("PGD adversarial training, L∞ ε = {}, {} steps of {:.4}·ε", o.eps, o.steps, o.rel_step),
        Method::FgsmRs => format!("FGSM with random start, L∞ ε = {}, α = {:.4}·ε", o.eps, o.rel_step),
        Method::Trades => format!("TRADES, L∞ ε = {}, β = {}, {} steps of {:.4}·ε", o.eps, o.beta, o.steps, o.rel_step),
    };
    let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    s += &format!(
        "{method}; ε ramp {} epochs; {} optimizer, peak learning rate {}, schedule {}, weight decay {}, batch {}, {} epochs, seed {}.\n\n",
        config.eps_ramp,
        name(serde_json::json!(config.optimizer)),
        config.lr,
        name(serde_json::json!(config.schedule)),
        config.weight_decay,
        config.batch_size,
        config.epochs,
        config.seed
    );
    s += &format!("```sh\n{}\n```\n\n", command_line());
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.to_string()))
        .unwrap_or_else(|| "?".into());
    s += &format!("Training time: {:.0} s ({threads} threads).\n\n", trained.seconds);
    s += "| epoch | loss | train accuracy | training ε | validation clean | validation PGD | seconds |\n|---|---|---|---|---|---|---|\n";
    for r in &trained.history {
        let rob = r.validation_robust.map_or("–".into(), |v| format!("{:.2}%", 100.0 * v));
        s += &format!(
            "| {} | {:.4} | {:.2}% | {:.4} | {:.2}% | {rob} | {:.0} |\n",
            r.epoch,
            r.loss,
            100.0 * r.train_accuracy,
            r.eps,
            100.0 * r.validation_clean,
            r.seconds
        );
    }
    if config.val_steps > 0 {
        s += &format!(
            "\nValidation PGD: {} steps of 2.5·ε/{} at ε = {}, random start, every example projected and re-classified.\n",
            config.val_steps, config.val_steps, o.eps
        );
    }
    s
}
