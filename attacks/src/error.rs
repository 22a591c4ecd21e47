//! The one error type of `gauntlet-attacks`.

#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("unknown attack `{name}`; available: {available}")]
    UnknownAttack { name: String, available: String },

    #[error("attack `{attack}`: {message}")]
    Param { attack: String, message: String },

    #[error("{0}")]
    Invalid(String),

    #[error(transparent)]
    Model(#[from] gauntlet_models::ModelError),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = AttackError> = std::result::Result<T, E>;
