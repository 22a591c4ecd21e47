//! Adversarial attacks for Gauntlet. An attack is one file implementing [`Attack`], plus one line
//! in [`Registry::default`]; norms are a parameter of the [`ThreatModel`], not separate attacks.

#[macro_use]
mod params;

pub mod apgd;
mod attack;
mod error;
pub mod fgsm;
pub mod fmn;
mod iterate;
pub mod mi_fgsm;
pub mod pgd;
pub mod registry;
mod rows;
pub mod square;
pub mod threat;

pub use apgd::{Apgd, ApgdLoss};
pub use attack::{Attack, AttackBatch, AttackKind, AttackOutput, Cost};
pub use error::{AttackError, Result};
pub use fgsm::Fgsm;
pub use fmn::Fmn;
pub use iterate::StepSize;
pub use mi_fgsm::MiFgsm;
pub use params::{parse_number, Params};
pub use pgd::Pgd;
pub use registry::Registry;
pub use square::Square;
pub use threat::{distances, NoiseKey, Norm, ThreatModel};
