//! Gauntlet: adversarial-robustness testing for image classifiers.
//!
//! The library runs whole evaluations from a [`run::RunConfig`] ([`run`]): the ε sweep and its
//! protocols with the re-check of every adversarial example ([`eval`]), the checks for the signs of
//! a flawed evaluation ([`checks`]); it judges reports by a release gate ([`gate`]) and renders them
//! ([`report`]). Imports run one way: run → checks → eval → report, gate → report. Models, attacks and
//! datasets live in the `gauntlet-models`, `gauntlet-attacks` and `gauntlet-datasets` crates,
//! re-exported here. The command line sits on top of them all ([`commands`] runs, [`cli`] holds
//! the clap types it parses); the `gauntlet` binary (`src/main.rs`) and the Python package only
//! call [`commands::main`].

pub mod checks;
pub mod cli;
pub mod commands;
mod error;
pub mod eval;
pub mod gate;
pub mod report;
pub mod run;
pub mod train;

pub use error::{Error, Result};
pub use gauntlet_attacks as attacks;
pub use gauntlet_datasets as datasets;
pub use gauntlet_models as models;
