//! The versioned JSON report (`report.json`), written and read back.

use std::path::Path;

use super::Report;
use crate::{Error, Result};

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes") + "\n"
    }

    /// Reads a `report.json`; errors name the file.
    pub fn read(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Input {
            path: path.display().to_string(),
            message: format!("cannot read the report ({e})"),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Input {
            path: path.display().to_string(),
            message: format!("not a gauntlet report.json (schema version 1 or 2): {e}"),
        })
    }
}
