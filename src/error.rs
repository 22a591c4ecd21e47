//! The one error type of the `gauntlet` library.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("{path}: {message}")]
    Output { path: String, message: String },

    #[error(transparent)]
    Model(#[from] gauntlet_models::ModelError),

    #[error(transparent)]
    Attack(#[from] gauntlet_attacks::AttackError),

    #[error(transparent)]
    Dataset(#[from] gauntlet_datasets::DatasetError),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
