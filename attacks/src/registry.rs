//! The explicit list of attacks, and the door for attacks defined outside this crate.

use std::collections::BTreeMap;

use crate::{Apgd, ApgdLoss, Attack, AttackError, Fgsm, Fmn, MiFgsm, Params, Pgd, Result, Square};

/// Builds an attack from its parameters.
pub type Factory = Box<dyn Fn(Params) -> Result<Box<dyn Attack>> + Send + Sync>;

struct Entry {
    summary: &'static str,
    factory: Factory,
}

/// Attacks by name.
pub struct Registry {
    entries: BTreeMap<String, Entry>,
}

impl Default for Registry {
    /// The built-in attacks.
    fn default() -> Self {
        let mut r = Registry::empty();
        r.register(Fgsm::NAME, "FGSM (L∞) / FGM (L2), one step of size ε", |p| Ok(Box::new(Fgsm::from_params(p)?)));
        r.register(Pgd::NAME, "PGD with random start, first success kept per sample", |p| {
            Ok(Box::new(Pgd::from_params(p)?))
        });
        r.register(MiFgsm::NAME, "MI-FGSM: iterative FGSM with momentum (Dong et al. 2018)", |p| {
            Ok(Box::new(MiFgsm::from_params(p)?))
        });
        r.register(Apgd::NAME, "APGD-CE: step-size-free PGD on cross-entropy (Croce & Hein 2020)", |p| {
            Ok(Box::new(Apgd::from_params(ApgdLoss::CrossEntropy, p)?))
        });
        r.register(Apgd::NAME_DLR, "APGD on the DLR loss (invariant to logit shift and scale)", |p| {
            Ok(Box::new(Apgd::from_params(ApgdLoss::Dlr, p)?))
        });
        r.register(Apgd::NAME_T, "APGD-T: targeted DLR towards each of the 9 most likely other classes", |p| {
            Ok(Box::new(Apgd::from_params(ApgdLoss::Targeted { targets: 9 }, p)?))
        });
        r.register(
            Fmn::NAME,
            "FMN: fast minimum-norm attack (Pintor et al. 2021), each sample's smallest perturbation",
            |p| Ok(Box::new(Fmn::from_params(p)?)),
        );
        r.register(
            Square::NAME,
            "Square: gradient-free random search (Andriushchenko et al. 2020), parameter queries",
            |p| Ok(Box::new(Square::from_params(p)?)),
        );
        r
    }
}

impl Registry {
    pub fn empty() -> Self {
        Registry { entries: BTreeMap::new() }
    }

    /// Adds (or replaces) an attack under `name`.
    pub fn register(
        &mut self,
        name: &str,
        summary: &'static str,
        factory: impl Fn(Params) -> Result<Box<dyn Attack>> + Send + Sync + 'static,
    ) {
        self.entries.insert(name.to_ascii_lowercase(), Entry { summary, factory: Box::new(factory) });
    }

    /// Builds the attack written as `name` or `name:key=value,...`.
    pub fn create(&self, spec: &str) -> Result<Box<dyn Attack>> {
        let (name, params) = spec.split_once(':').unwrap_or((spec, ""));
        let name = name.trim().to_ascii_lowercase();
        let entry = self
            .entries
            .get(&name)
            .ok_or_else(|| AttackError::UnknownAttack { name: name.clone(), available: self.names().join(", ") })?;
        (entry.factory)(Params::parse(&name, params)?)
    }

    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// (name, one-line summary) pairs.
    pub fn summaries(&self) -> Vec<(&str, &'static str)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), e.summary)).collect()
    }
}
