//! Sharding: shard I of N evaluates the contiguous slice `[I·n/N, (I+1)·n/N)` of the n samples.
//! Every sample's result depends only on the sample, the seed and the configuration, so the
//! shards merged (`gauntlet merge`) give exactly the numbers of one run.

use std::fmt;

use crate::{Error, Result};

/// Environment variables that carry a shard index, in the order they are consulted.
pub const INDEX_VARS: &[&str] = &["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"];
/// Environment variable that carries the shard count when `--shards` is not given.
pub const COUNT_VAR: &str = "GAUNTLET_SHARDS";

/// One shard of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// `I/N` with 0 ≤ I < N.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || Error::Config(format!("--shard {text}: use I/N with 0 ≤ I < N (e.g. 0/4)"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count).ok_or_else(bad)
    }

    pub fn new(index: usize, count: usize) -> Option<Shard> {
        (count >= 1 && index < count).then_some(Shard { index, count })
    }

    /// The samples of this shard out of `n`.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        self.index * n / self.count..(self.index + 1) * n / self.count
    }

    /// The shard a run evaluates: `--shard I/N` as given, or with only a count (`--shards N`, or
    /// `GAUNTLET_SHARDS`), the index from a scheduler's variable (`JOB_COMPLETION_INDEX` of a
    /// Kubernetes Indexed Job, `SLURM_ARRAY_TASK_ID` of a Slurm array). Returns the shard and the
    /// variable the index came from.
    pub fn resolve(
        explicit: Option<&str>,
        count: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, Option<&'static str>)>> {
        if let Some(text) = explicit {
            if count.is_some() {
                return Err(Error::Config("--shard I/N and --shards N: give one of them".into()));
            }
            return Ok(Some((Shard::parse(text)?, None)));
        }
        let count = match count {
            Some(n) => Some((n, "--shards")),
            None => env(COUNT_VAR)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map(|n| (n, COUNT_VAR))
                        .map_err(|_| Error::Config(format!("{COUNT_VAR}={v}: not a shard count")))
                })
                .transpose()?,
        };
        let Some((count, from)) = count else { return Ok(None) };
        if count == 0 {
            return Err(Error::Config(format!("{from} 0: there must be at least one shard")));
        }
        for var in INDEX_VARS {
            if let Some(v) = env(var) {
                let index = v.trim().parse::<usize>().ok().filter(|&i| i < count).ok_or_else(|| {
                    Error::Config(format!("{var}={v}: not a shard index below {count} (from {from})"))
                })?;
                return Ok(Some((Shard { index, count }, Some(var))));
            }
        }
        Err(Error::Config(format!(
            "{from} {count}: the shard index comes from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, and neither is set; use --shard I/{count}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_sample_once() {
        for n in [0, 1, 7, 10, 1000, 1001] {
            for count in 1..=9 {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard { index, count }.range(n);
                    assert_eq!(r.start, next, "n={n} count={count} index={index}");
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn index_from_the_scheduler() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(
            Shard::resolve(None, Some(4), k8s).unwrap(),
            Some((Shard { index: 3, count: 4 }, Some("JOB_COMPLETION_INDEX")))
        );
        let slurm = env(&[("SLURM_ARRAY_TASK_ID", "1"), ("GAUNTLET_SHARDS", "2")]);
        assert_eq!(
            Shard::resolve(None, None, slurm).unwrap(),
            Some((Shard { index: 1, count: 2 }, Some("SLURM_ARRAY_TASK_ID")))
        );
        assert!(Shard::resolve(None, Some(4), env(&[("JOB_COMPLETION_INDEX", "4")])).is_err());
        assert!(Shard::resolve(None, Some(4), env(&[])).is_err());
        assert_eq!(Shard::resolve(None, None, k8s).unwrap(), None);
        assert_eq!(Shard::resolve(Some("2/5"), None, k8s).unwrap(), Some((Shard { index: 2, count: 5 }, None)));
        for bad in ["5/5", "1", "a/2", "1/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
