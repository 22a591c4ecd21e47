//! The ONNX loader (protobuf decoding and graph preparation) and the model spec on arbitrary bytes.
#![no_main]

use candle_core::{DType, Device};
use gauntlet::models::{load_classifier, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let dir = std::env::temp_dir().join(format!("gauntlet-fuzz-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = if which % 2 == 0 { "m.onnx" } else { "m.toml" };
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let _ = load_classifier(&p, DType::F32, &Device::Cpu, &LoadOptions::default());
});
