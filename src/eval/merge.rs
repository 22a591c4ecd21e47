//! Evaluations of consecutive parts of a dataset (checkpointed batches, shards) joined into the
//! evaluation of the whole. Every sample's result is independent of the part it was evaluated in,
//! so the join equals one evaluation: per-sample vectors are concatenated, per-cell counts summed,
//! and the kept examples chosen again by the order they were found in.

use super::{AttackRecord, CellStats, Evaluation};
use crate::{Error, Result};

impl Evaluation {
    /// Joins `parts`, which must cover consecutive samples in order and come from one
    /// configuration; `keep` is the number of examples kept per attack.
    pub fn concat(parts: Vec<Evaluation>, keep: usize) -> Result<Evaluation> {
        let mut parts = parts.into_iter();
        let Some(mut whole) = parts.next() else {
            return Err(Error::Config("nothing to join: no evaluated samples".into()));
        };
        for part in parts {
            whole.append(part)?;
        }
        for rec in &mut whole.attacks {
            rec.examples.sort_by_key(|e| (e.found, e.sample));
            rec.examples.truncate(keep);
            rec.examples.sort_by_key(|e| e.sample);
        }
        Ok(whole)
    }

    /// Appends the evaluation of the samples that follow this one's.
    fn append(&mut self, part: Evaluation) -> Result<()> {
        let mismatch = |what: &str| Error::Config(format!("cannot join evaluations: {what} differ"));
        if part.first != self.first + self.samples() {
            return Err(Error::Config(format!(
                "cannot join evaluations: samples {}..{} are followed by a part starting at {}",
                self.first,
                self.first + self.samples(),
                part.first
            )));
        }
        if part.norm != self.norm || part.eps != self.eps {
            return Err(mismatch("the budgets"));
        }
        if part.cascade != self.cascade || part.target_mode != self.target_mode {
            return Err(mismatch("the protocols or targets"));
        }
        let names = |e: &Evaluation| e.attacks.iter().map(|a| (a.name.clone(), a.params.clone())).collect::<Vec<_>>();
        if names(&part) != names(self) {
            return Err(mismatch("the attacks"));
        }
        let offset = self.samples();
        self.labels.extend(part.labels);
        self.clean_pred.extend(part.clean_pred);
        match (&mut self.targets, part.targets) {
            (Some(t), Some(p)) => t.extend(p),
            (None, None) => {}
            _ => return Err(mismatch("the targets")),
        }
        for (rec, p) in self.attacks.iter_mut().zip(part.attacks) {
            rec.append(p, offset);
        }
        self.clean_seconds += part.clean_seconds;
        self.total_seconds += part.total_seconds;
        Ok(())
    }
}

impl Evaluation {
    /// Checks that an evaluation read from a file is whole: every per-sample vector as long as
    /// the labels, one cell per ε, indices in range. Reports build on these invariants.
    pub fn check_consistent(&self) -> std::result::Result<(), String> {
        let n = self.samples();
        if self.clean_pred.len() != n {
            return Err(format!("{} clean predictions for {n} samples", self.clean_pred.len()));
        }
        if self.targets.as_ref().is_some_and(|t| t.len() != n) {
            return Err("the targets do not match the samples".into());
        }
        if self.eps.is_empty() || self.eps.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
            return Err("the budgets are not positive numbers".into());
        }
        for rec in &self.attacks {
            let bad = |what: &str| Err(format!("attack {}: {what}", rec.name));
            if rec.broken.len() != n || rec.radius.as_ref().is_some_and(|r| r.len() != n) {
                return bad("per-sample results do not match the samples");
            }
            if rec.cells.len() != self.eps.len() {
                return bad("one cell per ε expected");
            }
            if rec.broken.iter().flatten().any(|b| b.eps_index >= self.eps.len()) {
                return bad("a budget index out of range");
            }
            if rec.examples.iter().any(|e| e.sample >= n || rec.broken[e.sample].is_none()) {
                return bad("a kept example of a sample that was not broken");
            }
        }
        Ok(())
    }
}

impl AttackRecord {
    fn append(&mut self, part: AttackRecord, offset: usize) {
        self.broken.extend(part.broken);
        for (c, p) in self.cells.iter_mut().zip(part.cells) {
            c.add(&p);
        }
        if let (Some(r), Some(p)) = (&mut self.radius, part.radius) {
            r.extend(p);
        }
        self.examples.extend(part.examples.into_iter().map(|mut e| {
            e.sample += offset;
            e
        }));
    }
}

impl CellStats {
    fn add(&mut self, o: &CellStats) {
        self.attacked += o.attacked;
        self.cost += o.cost;
        self.seconds += o.seconds;
        self.unconfirmed += o.unconfirmed;
        self.out_of_budget += o.out_of_budget;
        self.max_ratio = self.max_ratio.max(o.max_ratio);
    }
}
