//! Provenance: which files, configuration and build a report speaks for.
//!
//! The report records the SHA-256 of every model and dataset file the run read, the resolved
//! configuration (everything that changes the numbers) with its hash, the tool's version and git
//! commit, and when the run started and ended. `gauntlet verify` re-hashes files against it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// One file the run read, and its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileHash {
    /// The path as given (or `builtin:…/name` for data compiled into the binary).
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub model_files: Vec<FileHash>,
    pub dataset_files: Vec<FileHash>,
    /// The resolved configuration: every setting that can change the numbers.
    pub config: serde_json::Value,
    /// SHA-256 of `config` serialized compactly with its keys in the order written.
    pub config_sha256: String,
    pub tool_version: String,
    /// The commit the binary was built from, when built from a git checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The command line, as given.
    pub command: Vec<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
}

/// The git commit recorded at build time, if any.
pub fn git_commit() -> Option<String> {
    option_env!("GAUNTLET_GIT_COMMIT").filter(|c| !c.is_empty()).map(String::from)
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hashes a file, streaming.
pub fn hash_file(path: &Path) -> Result<FileHash> {
    let err =
        |e: std::io::Error| Error::Input { path: path.display().to_string(), message: format!("cannot read ({e})") };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(FileHash { path: path.display().to_string(), sha256: hex(&hasher.finalize()), bytes })
}

/// Hashes files compiled into the binary, named `prefix/name`.
pub fn hash_builtin(prefix: &str, files: &[(&str, &[u8])]) -> Vec<FileHash> {
    files
        .iter()
        .map(|(name, bytes)| FileHash {
            path: format!("{prefix}/{name}"),
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
        })
        .collect()
}

/// The files behind a model: the spec and its weights, or the shipped model's.
pub fn model_files(model: Option<&Path>) -> Result<Vec<FileHash>> {
    match model {
        None => Ok(hash_builtin(crate::models::zoo::MNIST_CNN, crate::models::zoo::MNIST_CNN_FILES)),
        Some(p) => match crate::models::zoo::find(p) {
            Some(e) => Ok(hash_builtin(&e.id(), e.files)),
            None => hash_all(&crate::models::model_files(p)?),
        },
    }
}

/// The files behind a dataset, or the shipped data's.
pub fn dataset_files(dataset: Option<&Path>) -> Result<Vec<FileHash>> {
    match dataset {
        None => Ok(hash_builtin("builtin:mnist-test-1k", crate::datasets::samples::MNIST_TEST_1K_FILES)),
        Some(p) => hash_all(&crate::datasets::input_files(p)?),
    }
}

fn hash_all(paths: &[PathBuf]) -> Result<Vec<FileHash>> {
    paths.iter().map(|p| hash_file(p)).collect()
}

/// The configuration's hash: SHA-256 of its compact JSON.
pub fn config_hash(config: &serde_json::Value) -> String {
    sha256_hex(serde_json::to_string(config).expect("JSON values serialize").as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How one recorded file compares with the file given now.
#[derive(Debug, Clone, PartialEq)]
pub enum FileMatch {
    Same,
    /// Same name, other contents.
    Changed {
        recorded: String,
        actual: String,
    },
    /// Recorded but not given now.
    Missing,
    /// Given now but not recorded.
    Extra,
}

/// Compares recorded hashes with fresh ones, by position within each list (names may differ when the
/// files were moved). Returns one line per file and whether all match.
pub fn compare(kind: &str, recorded: &[FileHash], actual: &[FileHash]) -> (Vec<(String, FileMatch)>, bool) {
    let mut lines = Vec::new();
    let mut all = true;
    for i in 0..recorded.len().max(actual.len()) {
        let (name, m) = match (recorded.get(i), actual.get(i)) {
            (Some(r), Some(a)) if r.sha256 == a.sha256 => (a.path.clone(), FileMatch::Same),
            (Some(r), Some(a)) => {
                (a.path.clone(), FileMatch::Changed { recorded: r.sha256.clone(), actual: a.sha256.clone() })
            }
            (Some(r), None) => (r.path.clone(), FileMatch::Missing),
            (None, Some(a)) => (a.path.clone(), FileMatch::Extra),
            (None, None) => unreachable!(),
        };
        all &= m == FileMatch::Same;
        lines.push((format!("{kind} {name}"), m));
    }
    (lines, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_inputs() {
        // FIPS 180-2 test vectors.
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
