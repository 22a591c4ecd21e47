//! Per-sample records (`samples.jsonl`): one JSON object per sample with its label, clean prediction
//! and, per attack and ε, whether it was broken and by what perturbation.

use serde::{Deserialize, Serialize};

/// One sample's line of `samples.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleRecord {
    /// Position in the evaluated dataset (after --limit).
    pub index: usize,
    pub label: u32,
    pub clean_pred: u32,
    pub correct: bool,
    /// Targets tried in turn (targeted evaluations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<u32>>,
    /// Per attack × ε, attacks in the order run and ε ascending.
    pub results: Vec<SampleResult>,
    /// Per ε: whether the sample resisted every attack (the worst case).
    pub robust: Vec<bool>,
    /// Per certification method × ε (`--certify`): certified, broken or open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<SampleCertificate>,
}

/// One attack at one ε on one sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleResult {
    pub attack: String,
    pub eps: f64,
    /// Broken by this attack at this ε or a smaller one (the same perturbation counts at every
    /// larger ε).
    pub broken: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adv_pred: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linf: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<f64>,
    /// The attack iteration of the first success, where the attack reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The smallest ε at which it broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_eps: Option<f64>,
}

/// One sample's status under one method at one ε.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CertStatus {
    Certified,
    Broken,
    Open,
}

/// One sample's certificate under one method at one ε, for `samples.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleCertificate {
    pub method: String,
    pub eps: f64,
    pub status: CertStatus,
    /// The proven lower bound of the smallest margin z_label − z_other over the ball.
    pub margin: f32,
}

/// The records as JSON Lines.
pub fn to_jsonl(records: &[SampleRecord]) -> String {
    let mut s = String::new();
    for r in records {
        s += &serde_json::to_string(r).expect("records serialize");
        s.push('\n');
    }
    s
}
