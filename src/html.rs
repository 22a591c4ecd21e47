//! HTML report (placeholder until the full renderer lands).
use crate::adversarial::AdvExample;
use crate::report::Report;
use crate::samples::SampleRecord;
/// The HTML report.
pub fn report(_report: &Report, _samples: &[SampleRecord], _examples: &[AdvExample]) -> String {
    String::new()
}
/// The leaderboard page.
pub fn leaderboard(_entries: &[(String, &Report)]) -> String {
    String::new()
}
