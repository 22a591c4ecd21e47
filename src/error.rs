//! The one error type of the `gauntlet` library. Every message names the option, file or attack
//! it is about.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work (a budget, a target, a batch size, an option combination).
    #[error("{0}")]
    Config(String),

    /// An input file that cannot be read or is not what it should be.
    #[error("{path}: {message}")]
    Input { path: String, message: String },

    /// An output that cannot be written.
    #[error("{path}: {message}")]
    Output { path: String, message: String },

    /// The model's clean logits are NaN or infinite: no robustness figure would mean anything.
    #[error("the model outputs NaN or infinite logits (sample {sample}, clean input); fix the model or its export")]
    NonFiniteOutput { sample: usize },

    /// The user stopped the run (Ctrl-C, SIGTERM): `done` of `total` samples were finished, and
    /// kept when a checkpoint folder is named.
    #[error("interrupted: {done} of {total} samples evaluated{}", match checkpoint { Some(c) => format!(", kept in {c}"), None => String::new() })]
    Interrupted { done: usize, total: usize, checkpoint: Option<String> },

    /// The user stopped a training run in epoch `epoch`; the state after the epoch before it is
    /// kept in `checkpoint` when one is named.
    #[error("interrupted in epoch {epoch}{}", match checkpoint { Some(c) => format!("; the epochs before it are kept in {c}"), None => String::new() })]
    TrainingInterrupted { epoch: usize, checkpoint: Option<String> },

    /// An attack broke the contract of `Attack::run` (a bug in the attack, not bad input).
    #[error("attack `{attack}` broke its contract: {message}")]
    AttackContract { attack: String, message: String },

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
