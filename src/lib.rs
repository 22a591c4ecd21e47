//! Gauntlet: adversarial-robustness testing for image classifiers.
//!
//! The library runs the evaluation ([`eval::evaluate`]) and builds reports ([`report::Report`]);
//! models, attacks and datasets live in the `gauntlet-models`, `gauntlet-attacks` and
//! `gauntlet-datasets` crates, re-exported here.

pub mod adversarial;
pub mod checks;
pub mod cli;
mod error;
pub mod eval;
pub mod gate;
pub mod junit;
pub mod markdown;
pub mod output;
pub mod progress;
pub mod provenance;
pub mod report;
pub mod samples;
pub mod train;

pub use error::{Error, Result};
pub use gauntlet_attacks as attacks;
pub use gauntlet_datasets as datasets;
pub use gauntlet_models as models;
