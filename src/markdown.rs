//! Markdown outputs (placeholder until the full renderer lands).
use crate::report::Report;
/// The CI step summary.
pub fn summary(report: &Report) -> String {
    report.to_table()
}
/// The leaderboard.
pub fn leaderboard(entries: &[(String, &Report)]) -> String {
    entries.iter().map(|e| format!("{} {}\n", e.0, e.1.clean_accuracy)).collect()
}
