//! `gauntlet verify`: does a report speak for these files?

use crate::report::format::short_hash as short;
use crate::report::provenance::{self, FileMatch};
use crate::report::Report;
use crate::run::is_builtin_model;
use anyhow::bail;

use crate::cli::{ExitStatus, VerifyArgs};

/// Re-hashes the model and dataset files and compares them with the report's provenance. Exit 0
/// when every file and the configuration hash match, 1 when not.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    let report = Report::read(&args.report)?;
    let Some(prov) = &report.provenance else {
        bail!(
            "{}: the report has no provenance section (written without it); re-run `gauntlet run` to get one",
            args.report.display()
        );
    };
    let model = args.model.as_deref().filter(|m| !is_builtin_model(m));
    // Other shipped models (`builtin:<name>`) are hashed from the files compiled in.
    let model_files = provenance::model_files(model)?;
    let dataset_files = provenance::dataset_files(args.dataset.as_deref())?;
    let (mut lines, model_ok) = provenance::compare("model", &prov.model_files, &model_files);
    let (dlines, data_ok) = provenance::compare("dataset", &prov.dataset_files, &dataset_files);
    lines.extend(dlines);
    for (name, m) in &lines {
        match m {
            FileMatch::Same => println!("ok       {name}"),
            FileMatch::Changed { recorded, actual } => {
                println!("CHANGED  {name}: sha256 {} in the report, {} now", short(recorded), short(actual))
            }
            FileMatch::Missing => println!("MISSING  {name}: in the report, not among the files given"),
            FileMatch::Extra => println!("EXTRA    {name}: given, not in the report"),
        }
    }
    let config_ok = provenance::config_hash(&prov.config) == prov.config_sha256;
    if !config_ok {
        println!("CHANGED  config: its sha256 no longer matches the recorded configuration (the report was edited)");
    }
    if model_ok && data_ok && config_ok {
        println!("verified: {} speaks for these files", args.report.display());
        Ok(ExitStatus::Ok)
    } else {
        let what: Vec<&str> = [(!model_ok, "model files"), (!data_ok, "dataset files"), (!config_ok, "configuration")]
            .iter()
            .filter(|w| w.0)
            .map(|w| w.1)
            .collect();
        println!("NOT verified: {} does not speak for these files ({} differ)", args.report.display(), what.join(", "));
        Ok(ExitStatus::Gate)
    }
}
