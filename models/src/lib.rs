//! Classifiers for Gauntlet: the [`Classifier`] trait that attacks see, sequential architectures
//! built from a TOML spec plus safetensors weights, pooling with correct gradients, and devices.

pub mod bounds;
pub mod classifier;
pub mod conv;
pub mod cpu_ops;
pub mod device;
pub mod engine;
mod error;
mod kernel;
pub mod linear;
pub mod load;
pub mod onnx;
pub mod ops;
pub mod preprocess;
pub mod sequential;
pub mod spec;
pub mod zoo;

pub use classifier::{autograd_loss_and_grad, objective, predictions, Bounds, Classifier, Goal, Loss, LossGrad};
pub use error::{ModelError, Result};
pub use load::{load_classifier, LoadOptions};
pub use sequential::{Layer, Sequential};
pub use spec::{load_model, model_files, LayerSpec, ModelSpec};
