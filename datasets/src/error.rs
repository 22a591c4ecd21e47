//! The one error type of `gauntlet-datasets`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },

    /// A bad loading option (`--resize`, `--center-crop`, `--data-layout`).
    #[error("{0}")]
    Options(String),
}

pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
