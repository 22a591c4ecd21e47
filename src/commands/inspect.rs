//! `gauntlet inspect`: what a model is and whether it can be attacked with gradients.

use crate::models::{self, Classifier};
use crate::run::load_model;

use crate::cli::{ExitStatus, InspectArgs};

pub fn run(args: &InspectArgs) -> anyhow::Result<ExitStatus> {
    if args.operators {
        print!("{}", models::onnx::operator_list());
    }
    let Some(path) = args.model.as_deref() else { return Ok(ExitStatus::Ok) };
    let opts = args.graph.load_options()?;
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        print!("{}", models::onnx::inspect(path, &opts)?);
        return Ok(ExitStatus::Ok);
    }
    let (model, source) = load_model(Some(path), &candle_core::Device::Cpu, &opts)?;
    let [c, h, w] = model.input_shape();
    println!("model      {source}");
    println!("input      ({c}, {h}, {w}) pixels in [{}, {}]", model.bounds().lo, model.bounds().hi);
    println!("classes    {}", model.num_classes());
    println!("parameters {}", model.parameter_count());
    println!("executor   {}", model.executor());
    match model.gradient_issue() {
        None => println!("gradient   available"),
        Some(issue) => println!("gradient   MASKED: {issue}"),
    }
    match model.bound_net() {
        Ok(_) => println!("certify    ibp, crown (--certify)"),
        Err(e) => println!("certify    not available: {e}"),
    }
    Ok(ExitStatus::Ok)
}
