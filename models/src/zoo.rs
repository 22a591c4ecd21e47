//! Models shipped inside the binary (trained by `gauntlet train`; see the README).

use std::path::Path;

use candle_core::{DType, Device};

use crate::spec::{weights_from_bytes, ModelSpec};
use crate::{Result, Sequential};

/// Name under which the default model appears in reports.
pub const MNIST_CNN: &str = "builtin:mnist-cnn";

const MNIST_SPEC: &str = include_str!("../zoo/mnist-cnn.toml");
const MNIST_WEIGHTS: &[u8] = include_bytes!("../zoo/mnist-cnn.safetensors");

/// The files behind [`mnist_cnn`], by name, as compiled in.
pub const MNIST_CNN_FILES: &[(&str, &[u8])] =
    &[("mnist-cnn.toml", MNIST_SPEC.as_bytes()), ("mnist-cnn.safetensors", MNIST_WEIGHTS)];

/// The default MNIST classifier: conv16-pool-conv32-pool-fc100-fc10, trained on the MNIST training set.
pub fn mnist_cnn(device: &Device) -> Result<Sequential> {
    let spec = ModelSpec::parse(MNIST_SPEC, Path::new("models/zoo/mnist-cnn.toml"))?;
    let weights = weights_from_bytes(MNIST_WEIGHTS, Path::new("models/zoo/mnist-cnn.safetensors"))?;
    spec.build(&weights, Path::new(MNIST_CNN), DType::F32, device)
}
