//! A report folder: every output under fixed names, each written atomically, `report.json` last so
//! that a folder holding a `report.json` is complete.

use std::path::{Path, PathBuf};

use super::adversarial::{self, AdvExample};
use super::samples::{self, SampleRecord};
use super::write::write_atomic;
use super::{html, junit, markdown, Report};
use crate::{Error, Result};

pub const REPORT_JSON: &str = "report.json";
pub const SAMPLES_JSONL: &str = "samples.jsonl";
pub const SUMMARY_MD: &str = "summary.md";
pub const JUNIT_XML: &str = "junit.xml";
pub const REPORT_HTML: &str = "report.html";
pub const ADVERSARIAL_DIR: &str = "adversarial";

/// Refuses a path that exists and is not a folder, before any work is done.
pub fn check_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Output { path: dir.display().to_string(), message: "exists and is not a folder".into() });
    }
    Ok(())
}

/// Writes every output into `dir` (created if needed); the adversarial images only when asked.
pub fn write(
    dir: &Path,
    report: &Report,
    records: &[SampleRecord],
    examples: &[AdvExample],
    save_adversarial: bool,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Output {
        path: dir.display().to_string(),
        message: format!("cannot create the report folder ({e})"),
    })?;
    let mut written = Vec::new();
    let mut put = |name: &str, text: String| -> Result<()> {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes())?;
        written.push(path);
        Ok(())
    };
    put(SAMPLES_JSONL, samples::to_jsonl(records))?;
    put(SUMMARY_MD, markdown::summary(report))?;
    put(JUNIT_XML, junit::render(report))?;
    put(REPORT_HTML, html::report(report, records, examples))?;
    if save_adversarial {
        written.extend(adversarial::save(&dir.join(ADVERSARIAL_DIR), examples, report.bounds)?);
    }
    let path = dir.join(REPORT_JSON);
    write_atomic(&path, report.to_json().as_bytes())?;
    written.push(path);
    Ok(written)
}
