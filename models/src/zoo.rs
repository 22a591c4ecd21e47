//! Models shipped inside the binary (trained by `gauntlet train`; see the README).

use std::path::Path;

use candle_core::{DType, Device};

use crate::spec::{weights_from_bytes, ModelSpec};
use crate::{Result, Sequential};

/// Name under which the default model appears in reports.
pub const MNIST_CNN: &str = "builtin:mnist-cnn";

/// The default MNIST classifier: conv16-pool-conv32-pool-fc100-fc10, trained on the MNIST training set.
pub fn mnist_cnn(device: &Device) -> Result<Sequential> {
    let spec = ModelSpec::parse(include_str!("../zoo/mnist-cnn.toml"), Path::new("models/zoo/mnist-cnn.toml"))?;
    let weights = weights_from_bytes(
        include_bytes!("../zoo/mnist-cnn.safetensors"),
        Path::new("models/zoo/mnist-cnn.safetensors"),
    )?;
    spec.build(&weights, Path::new(MNIST_CNN), DType::F32, device)
}
