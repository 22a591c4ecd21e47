//! The one error type of `gauntlet-attacks`.

#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("unknown attack `{name}`; available: {available}")]
    UnknownAttack { name: String, available: String },

    /// The attack's parameters, as the user wrote them, are wrong.
    #[error("attack `{attack}`: {message}")]
    Param { attack: String, message: String },

    /// The threat model (norm, ε), as the user wrote it, is wrong.
    #[error("{0}")]
    Threat(String),

    /// The attack was handed a batch or goal outside what it handles: its caller's mistake.
    #[error("attack `{attack}` cannot run on this batch: {message}")]
    Unsupported { attack: String, message: String },

    #[error(transparent)]
    Model(#[from] gauntlet_models::ModelError),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = AttackError> = std::result::Result<T, E>;
