//! `gauntlet merge`: the report folders of a sharded run joined into the report one run gives.
//!
//! Each shard's folder keeps its checkpoint (the per-sample results of its slice, and a manifest
//! naming the model, data and configuration). The merge reads every manifest, refuses shards of
//! different runs and missing or duplicate shards, rebuilds the run's configuration from the
//! command line the shards recorded, joins the slices, runs the integrity checks on the whole
//! (they need the model and the data) and writes the report folder as `run` would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::eval::Evaluation;
use crate::run::{Checkpoint, Manifest, RunConfig, Shard};
use anyhow::{bail, Context};
use clap::Parser;

use crate::cli::progress::Bar;
use crate::cli::{Cli, Command, MergeArgs, RunArgs};
use crate::commands::run::{finish, Outputs, Verdict};
use crate::report::dir::check_dir;

pub fn run(args: &MergeArgs) -> anyhow::Result<crate::cli::ExitStatus> {
    crate::cli::config::set_threads(args.threads)?;
    let shards = read_shards(&args.shards)?;
    let (first_dir, first) = shards.values().next().expect("at least one shard");
    let run_args = recorded_run(first_dir, &first.0)?;
    let config = run_config(&run_args, args, first.0.keep)?;
    // The run the shards belong to, as this machine sees it: the same model and data files,
    // the same configuration except the shard.
    let expected = config_without_shard(rebuild(&run_args, args, first.0.keep)?.manifest()?, args);
    for (dir, (manifest, _)) in shards.values() {
        let diff = config_without_shard(manifest.clone(), args).differences(&expected);
        if !diff.is_empty() {
            bail!("{}: the shard belongs to another run: {}", dir.display(), diff.join("; "));
        }
    }
    let verdict = Verdict::read(args.gate.as_deref(), args.baseline.as_deref(), &config)?;
    check_dir(&args.report_dir)?;
    let parts: Vec<Evaluation> = shards.into_values().flat_map(|(_, (_, parts))| parts).collect();
    let save_adversarial = run_args.save_adversarial.is_some();
    let out = config.merge(parts, &Bar::new(args.quiet))?;
    let outputs = Outputs {
        report_dir: Some(&args.report_dir),
        output: None,
        save_adversarial,
        format: args.format,
        strict: args.strict,
        exit_zero: args.exit_zero,
    };
    finish(out, &verdict, &outputs)
}

type Shards = BTreeMap<usize, (PathBuf, (Manifest, Vec<Evaluation>))>;

/// Every shard's manifest and slices, by index; refuses unfinished, missing and duplicate shards
/// and shards of different counts.
fn read_shards(dirs: &[PathBuf]) -> anyhow::Result<Shards> {
    let mut shards: Shards = BTreeMap::new();
    let mut count = None;
    for dir in dirs {
        let (manifest, parts) = Checkpoint::read_all(dir)?;
        let shard = manifest
            .config
            .get("shard")
            .and_then(|s| s.as_str())
            .and_then(|s| Shard::parse(s).ok())
            .with_context(|| format!("{}: not a shard (the run had no --shard)", dir.display()))?;
        match count {
            None => count = Some((shard.count, dir.clone())),
            Some((n, ref other)) if n != shard.count => {
                bail!("{}: shard {shard} but {} is of {n} shards", dir.display(), other.display())
            }
            _ => {}
        }
        if let Some((other, _)) = shards.get(&shard.index) {
            bail!("{} and {} are both shard {shard}", other.display(), dir.display());
        }
        shards.insert(shard.index, (dir.clone(), (manifest, parts)));
    }
    let n = count.map_or(0, |c| c.0);
    let missing: Vec<String> = (0..n).filter(|i| !shards.contains_key(i)).map(|i| format!("{i}/{n}")).collect();
    if !missing.is_empty() {
        bail!("shard {} missing: give every shard's report folder", missing.join(", "));
    }
    Ok(shards)
}

/// The `run` arguments a shard was started with, from its manifest.
fn recorded_run(dir: &Path, manifest: &Manifest) -> anyhow::Result<RunArgs> {
    let parsed = Cli::try_parse_from(&manifest.command).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot read the shard's recorded command line ({})",
            dir.display(),
            e.to_string().lines().next().unwrap_or("")
        )
    })?;
    match parsed.command {
        Command::Run(args) => Ok(args),
        _ => bail!("{}: the shard was not made by `gauntlet run`", dir.display()),
    }
}

/// The run's configuration, with the model and data where `merge` was told they are now.
fn run_config(run: &RunArgs, merge: &MergeArgs, keep: usize) -> anyhow::Result<RunConfig> {
    let mut config = run.eval.run_config(merge.model.clone().or_else(|| run.model.clone()), keep)?;
    if let Some(d) = &merge.dataset {
        config.dataset = Some(d.clone());
    }
    Ok(config)
}

/// The same configuration again (a `RunConfig` is consumed by loading).
fn rebuild(run: &RunArgs, merge: &MergeArgs, keep: usize) -> anyhow::Result<RunConfig> {
    run_config(run, merge, keep)
}

/// A manifest reduced to what all shards of one run share: no shard or slice; and where the
/// model or data were moved (`--model`, `--dataset`), their contents, not their paths.
fn config_without_shard(mut m: Manifest, merge: &MergeArgs) -> Manifest {
    if let Some(c) = m.config.as_object_mut() {
        c.remove("shard");
        if merge.model.is_some() {
            c.remove("model");
        }
        if merge.dataset.is_some() {
            c.remove("dataset");
        }
    }
    let anonymous = |files: &mut Vec<crate::report::provenance::FileHash>| {
        for f in files {
            f.path.clear();
        }
    };
    if merge.model.is_some() {
        anonymous(&mut m.model_files);
    }
    if merge.dataset.is_some() {
        anonymous(&mut m.dataset_files);
    }
    m.range = [0, 0];
    m.command.clear();
    m
}
