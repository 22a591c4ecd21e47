//! Adversarial attacks for Gauntlet. An attack is one file implementing [`Attack`], plus one line
//! in [`Registry::default`]; norms are a parameter of the [`ThreatModel`], not separate attacks.

pub mod apgd;
mod attack;
mod error;
pub mod fgsm;
pub mod fmn;
pub mod mi_fgsm;
pub mod pgd;
pub mod registry;
pub mod square;
pub mod threat;

pub use apgd::{Apgd, ApgdLoss};
pub use attack::{parse_number, Attack, AttackBatch, AttackOutput, Cost, Params};
pub use error::{AttackError, Result};
pub use fgsm::Fgsm;
pub use fmn::Fmn;
pub use mi_fgsm::MiFgsm;
pub use pgd::{Pgd, StepSize};
pub use registry::Registry;
pub use square::Square;
pub use threat::{distances, NoiseKey, Norm, ThreatModel};
