//! Checkpoints: a run with a report folder keeps every finished batch in `DIR/checkpoint/`, one
//! file per batch (written to a temporary file, fsynced, renamed), beside a manifest naming the
//! model, data and configuration they belong to. `--resume` continues from them; a shard's
//! checkpoint is what `gauntlet merge` reads. A run that finishes writes its report and then
//! removes the checkpoint (a shard keeps it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::Evaluation;
use crate::report::provenance::FileHash;
use crate::report::write::write_atomic;
use crate::report::Check;
use crate::{Error, Result};

/// The checkpoint folder's name inside a report folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
const MANIFEST: &str = "manifest.json";
const CHECKS: &str = "checks.json";
/// Bumped when the files' meaning changes; a checkpoint of another format is refused.
pub(crate) const FORMAT: u32 = 1;

/// What a checkpoint belongs to. Two runs may share a checkpoint only when their manifests agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The run's resolved configuration (with `shard` for a shard).
    pub config: serde_json::Value,
    pub model_files: Vec<FileHash>,
    pub dataset_files: Vec<FileHash>,
    /// Samples in the whole evaluated dataset (after `--limit`).
    pub samples: usize,
    /// The samples this run evaluates: all, or a shard's slice.
    pub range: [usize; 2],
    /// Samples per checkpointed batch.
    pub block: usize,
    /// Adversarial examples kept per attack.
    pub keep: usize,
    /// The command line that made it (shown by `merge` and when resuming).
    pub command: Vec<String>,
}

impl Manifest {
    /// The batches: consecutive sample ranges of `block` samples covering `range`.
    pub fn blocks(&self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let [lo, hi] = self.range;
        let block = self.block.max(1);
        (lo..hi).step_by(block).map(move |s| s..s.saturating_add(block).min(hi))
    }

    /// What differs between this manifest (the checkpoint's) and `now` (the run's), one phrase each.
    pub fn differences(&self, now: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        let empty = serde_json::Map::new();
        let (a, b) = (self.config.as_object().unwrap_or(&empty), now.config.as_object().unwrap_or(&empty));
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (x, y) = (a.get(k).unwrap_or(&serde_json::Value::Null), b.get(k).unwrap_or(&serde_json::Value::Null));
            if x != y {
                out.push(format!("{k} is {y} now but {x} in the checkpoint"));
            }
        }
        for (what, x, y) in
            [("model", &self.model_files, &now.model_files), ("dataset", &self.dataset_files, &now.dataset_files)]
        {
            if x != y {
                out.push(file_difference(what, x, y));
            }
        }
        if self.samples != now.samples {
            out.push(format!("the dataset has {} samples now but {} in the checkpoint", now.samples, self.samples));
        }
        if self.range != now.range {
            out.push(format!("samples {:?} now but {:?} in the checkpoint", now.range, self.range));
        }
        if self.block != now.block {
            out.push(format!("batches of {} now but {} in the checkpoint", now.block, self.block));
        }
        if self.keep != now.keep {
            out.push(format!("{} adversarial examples kept now but {} in the checkpoint", now.keep, self.keep));
        }
        if self.format != now.format {
            out.push(format!("checkpoint format {} (this build reads {})", self.format, now.format));
        }
        out
    }
}

/// The first file whose hash or name differs, as a phrase.
fn file_difference(what: &str, old: &[FileHash], new: &[FileHash]) -> String {
    for (o, n) in old.iter().zip(new) {
        if o.path != n.path {
            return format!("the {what} file is {} now but {} in the checkpoint", n.path, o.path);
        }
        if o.sha256 != n.sha256 {
            return format!(
                "the {what} file {} changed (sha256 {}… now, {}… in the checkpoint)",
                n.path,
                n.sha256.chars().take(12).collect::<String>(),
                o.sha256.chars().take(12).collect::<String>()
            );
        }
    }
    format!("the {what} has {} files now but {} in the checkpoint", new.len(), old.len())
}

/// An open checkpoint folder.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    pub manifest: Manifest,
    /// Whether the folder (with its manifest) exists yet: a new checkpoint is created with the
    /// first finished batch, so that a run failing before any leaves nothing behind.
    created: std::sync::atomic::AtomicBool,
    /// Whether this run started the checkpoint (rather than resuming one).
    fresh: bool,
    /// Whether the report folder existed before this run.
    report_dir_existed: bool,
}

impl Checkpoint {
    /// The checkpoint of a run writing into `report_dir`. Without `resume`, an existing
    /// checkpoint is refused (it holds finished work); with it, one made by another model, dataset
    /// or configuration is refused with the differences named, and a missing one is started.
    pub fn open(report_dir: &Path, manifest: Manifest, resume: bool) -> Result<Checkpoint> {
        let dir = report_dir.join(CHECKPOINT_DIR);
        let path = dir.join(MANIFEST);
        if path.exists() {
            if !resume {
                return Err(Error::Output {
                    path: dir.display().to_string(),
                    message: "holds the checkpoint of an unfinished run; add --resume to continue it, or remove the folder to start again".into(),
                });
            }
            let old = read_manifest(&path)?;
            let diff = old.differences(&manifest);
            if !diff.is_empty() {
                return Err(Error::Input {
                    path: dir.display().to_string(),
                    message: format!(
                        "the checkpoint was made by another run and cannot be resumed: {}; remove the folder to start again",
                        diff.join("; ")
                    ),
                });
            }
            return Ok(Checkpoint { dir, manifest: old, created: true.into(), fresh: false, report_dir_existed: true });
        }
        Ok(Checkpoint { dir, manifest, created: false.into(), fresh: true, report_dir_existed: report_dir.exists() })
    }

    /// Creates the folder and its manifest, once.
    fn create(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.created.load(Ordering::SeqCst) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::Output {
            path: self.dir.display().to_string(),
            message: format!("cannot create the checkpoint folder ({e})"),
        })?;
        let json = serde_json::to_string_pretty(&self.manifest).expect("a manifest serializes");
        write_atomic(&self.dir.join(MANIFEST), json.as_bytes())?;
        self.created.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// After an error that no resume can get past (bad input, an unwritable folder): removes what
    /// this run created, so that a failed run leaves no output behind. A resumed checkpoint stays.
    pub fn discard(self) {
        if self.fresh {
            let _ = std::fs::remove_dir_all(&self.dir);
            if !self.report_dir_existed {
                if let Some(parent) = self.dir.parent() {
                    let _ = std::fs::remove_dir(parent);
                }
            }
        }
    }

    /// Reads a finished checkpoint (a shard's) with every batch: for `gauntlet merge`.
    pub fn read_all(report_dir: &Path) -> Result<(Manifest, Vec<Evaluation>)> {
        let dir = report_dir.join(CHECKPOINT_DIR);
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            return Err(Error::Input {
                path: report_dir.display().to_string(),
                message: "not a shard's report folder (no checkpoint/manifest.json); shards are written by `gauntlet run --shard I/N --report-dir DIR`".into(),
            });
        }
        let cp = Checkpoint {
            dir,
            manifest: read_manifest(&path)?,
            created: true.into(),
            fresh: false,
            report_dir_existed: true,
        };
        let mut parts = Vec::new();
        for (j, range) in cp.manifest.blocks().enumerate() {
            match cp.load_part(j, &range)? {
                Some(p) => parts.push(p),
                None => {
                    return Err(Error::Input {
                        path: report_dir.display().to_string(),
                        message: format!(
                        "the shard is unfinished: samples {}..{} are missing; resume it with its command and --resume",
                        range.start, range.end
                    ),
                    })
                }
            }
        }
        Ok((cp.manifest, parts))
    }

    fn part_path(&self, j: usize) -> PathBuf {
        self.dir.join(format!("part-{j:06}.json"))
    }

    /// Batch `j` (samples `range`), if it was finished.
    pub fn load_part(&self, j: usize, range: &std::ops::Range<usize>) -> Result<Option<Evaluation>> {
        let path = self.part_path(j);
        if !path.exists() {
            return Ok(None);
        }
        let damaged = |why: String| Error::Input {
            path: path.display().to_string(),
            message: format!("a damaged checkpoint file ({why}); delete it to evaluate its samples again"),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| damaged(e.to_string()))?;
        let part: Evaluation = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        part.check_consistent().map_err(damaged)?;
        if part.first != range.start || part.samples() != range.len() {
            return Err(damaged(format!(
                "it holds samples {}..{}, not {}..{}",
                part.first,
                part.first + part.samples(),
                range.start,
                range.end
            )));
        }
        Ok(Some(part))
    }

    /// Keeps batch `j`.
    pub fn save_part(&self, j: usize, part: &Evaluation) -> Result<()> {
        self.create()?;
        let json = serde_json::to_string(part).expect("an evaluation serializes");
        write_atomic(&self.part_path(j), json.as_bytes())
    }

    /// The integrity checks, once run.
    pub fn load_checks(&self) -> Result<Option<Vec<Check>>> {
        let path = self.dir.join(CHECKS);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Input { path: path.display().to_string(), message: format!("cannot read ({e})") })?;
        serde_json::from_str(&text).map(Some).map_err(|e| Error::Input {
            path: path.display().to_string(),
            message: format!("a damaged checkpoint file ({e}); delete it to run the checks again"),
        })
    }

    pub fn save_checks(&self, checks: &[Check]) -> Result<()> {
        self.create()?;
        let json = serde_json::to_string(checks).expect("checks serialize");
        write_atomic(&self.dir.join(CHECKS), json.as_bytes())
    }

    /// The folder, for messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the checkpoint of a finished run (its report now holds everything).
    pub fn remove(self) -> Result<()> {
        if !self.created.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::Output {
            path: self.dir.display().to_string(),
            message: format!("cannot remove the finished run's checkpoint ({e})"),
        })
    }
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let err = |why: String| Error::Input {
        path: path.display().to_string(),
        message: format!("not a readable checkpoint manifest ({why}); remove the checkpoint folder to start again"),
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let [lo, hi] = m.range;
    if lo > hi || hi > m.samples || m.block == 0 {
        return Err(err(format!("samples {lo}..{hi} of {} in batches of {}", m.samples, m.block)));
    }
    Ok(m)
}
