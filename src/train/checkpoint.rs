//! The training checkpoint: after every epoch, the weights and the optimiser's moments
//! (`state.safetensors`) and the epoch records with the run's settings and the weights file's
//! SHA-256 (`state.json`, renamed into place last, so a torn pair is detected). A resumed run
//! must have the same settings; any difference is named.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use gauntlet_models::engine::Params;
use serde::{Deserialize, Serialize};

use super::{EpochRecord, Optimizer};
use crate::report::provenance::sha256_hex;
use crate::report::write::write_atomic;
use crate::{Error, Result};

const VERSION: u32 = 1;

/// What a checkpoint holds.
pub struct State {
    pub params: Vec<Params>,
    pub optimizer: Optimizer,
    pub history: Vec<EpochRecord>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    epochs_done: usize,
    optimizer_steps: u64,
    tensors_sha256: String,
    config: serde_json::Value,
    history: Vec<EpochRecord>,
}

/// The bytes of a safetensors file holding `tensors` (`near` names the output in messages).
pub fn safetensors_bytes(tensors: &HashMap<String, Tensor>, near: &Path) -> Result<Vec<u8>> {
    let err = |message: String| Error::Output { path: near.display().to_string(), message };
    let tmp = std::env::temp_dir().join(format!(
        "gauntlet-weights-{}-{:?}.safetensors",
        std::process::id(),
        std::thread::current().id()
    ));
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| err(format!("cannot encode the weights: {e}")))?;
    let bytes = std::fs::read(&tmp).map_err(|e| err(format!("cannot encode the weights: {e}")));
    let _ = std::fs::remove_file(&tmp);
    bytes
}

fn vec_tensor(v: &[f32]) -> Result<Tensor> {
    Ok(Tensor::from_slice(v, v.len(), &Device::Cpu)?)
}

/// Writes the state after an epoch into `dir` (created if missing).
pub fn save(dir: &Path, config: &serde_json::Value, state: &State) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Output {
        path: dir.display().to_string(),
        message: format!("cannot create the checkpoint folder: {e}"),
    })?;
    let mut tensors = HashMap::new();
    for (i, p) in state.params.iter().enumerate() {
        tensors.insert(format!("param.{i}.weight"), vec_tensor(&p.weight)?);
        tensors.insert(format!("param.{i}.bias"), vec_tensor(&p.bias)?);
    }
    for (j, m) in state.optimizer.m.iter().enumerate() {
        tensors.insert(format!("moment1.{j}"), vec_tensor(m)?);
    }
    for (j, v) in state.optimizer.v.iter().enumerate() {
        tensors.insert(format!("moment2.{j}"), vec_tensor(v)?);
    }
    let path = dir.join("state.safetensors");
    let bytes = safetensors_bytes(&tensors, &path)?;
    write_atomic(&path, &bytes)?;
    let manifest = Manifest {
        version: VERSION,
        epochs_done: state.history.len(),
        optimizer_steps: state.optimizer.steps,
        tensors_sha256: sha256_hex(&bytes),
        config: config.clone(),
        history: state.history.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");
    write_atomic(&dir.join("state.json"), &json)
}

/// The state kept in `dir`, or `None` when there is none; refused when it was written by a run
/// with other settings or does not fit the model (`params`, `fresh` give the expected shapes).
pub fn load(dir: &Path, config: &serde_json::Value, params: &[Params], fresh: &Optimizer) -> Result<Option<State>> {
    let manifest_path = dir.join("state.json");
    if !manifest_path.exists() {
        return Ok(None);
    }
    let bad = |message: String| Error::Input { path: manifest_path.display().to_string(), message };
    let text = std::fs::read(&manifest_path).map_err(|e| bad(format!("cannot read the checkpoint: {e}")))?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(format!("not a training checkpoint ({e})")))?;
    if m.version != VERSION {
        return Err(bad(format!(
            "checkpoint version {} (this build reads {VERSION}); start afresh without --resume",
            m.version
        )));
    }
    let differ: Vec<String> = match (config.as_object(), m.config.as_object()) {
        (Some(now), Some(then)) => now
            .iter()
            .filter(|(k, v)| then.get(*k) != Some(v))
            .map(|(k, v)| match then.get(k) {
                Some(old) if !k.ends_with("data") && k != "spec" => format!("{k} ({old} then, {v} now)"),
                _ => k.clone(),
            })
            .collect(),
        _ => vec!["config".into()],
    };
    if !differ.is_empty() {
        return Err(bad(format!(
            "the checkpoint was written by a run with other settings: {}; use the same command, or another checkpoint folder",
            differ.join(", ")
        )));
    }
    let tpath = dir.join("state.safetensors");
    let bytes = std::fs::read(&tpath).map_err(|e| Error::Input {
        path: tpath.display().to_string(),
        message: format!("cannot read the checkpoint: {e}"),
    })?;
    if sha256_hex(&bytes) != m.tensors_sha256 {
        return Err(bad(
            "state.safetensors does not match its manifest (an interrupted write?); start afresh without --resume"
                .into(),
        ));
    }
    let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| Error::Input {
        path: tpath.display().to_string(),
        message: format!("not a valid checkpoint ({e})"),
    })?;
    let get = |name: String, len: usize| -> Result<Vec<f32>> {
        let t = map.get(&name).ok_or_else(|| bad(format!("the checkpoint lacks `{name}`")))?;
        let v = t.to_vec1::<f32>()?;
        if v.len() != len {
            return Err(bad(format!("`{name}` has {} values, the model {len}", v.len())));
        }
        Ok(v)
    };
    let mut restored = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        restored.push(Params {
            weight: get(format!("param.{i}.weight"), p.weight.len())?,
            bias: get(format!("param.{i}.bias"), p.bias.len())?,
        });
    }
    let mut optimizer = fresh.clone();
    for (j, m1) in optimizer.m.iter_mut().enumerate() {
        *m1 = get(format!("moment1.{j}"), m1.len())?;
    }
    for (j, m2) in optimizer.v.iter_mut().enumerate() {
        *m2 = get(format!("moment2.{j}"), m2.len())?;
    }
    optimizer.steps = m.optimizer_steps;
    Ok(Some(State { params: restored, optimizer, history: m.history }))
}
