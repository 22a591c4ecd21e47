//! Models shipped inside the binary (trained by `gauntlet train`; each has a model card beside
//! it in `models/zoo/`). `builtin:mnist-cnn` is the default model; the `<dataset>-standard` and
//! `<dataset>-robust` pairs share an architecture and differ only in training (plain, or PGD
//! adversarial training), so that a gate can be seen failing one and passing the other.

use std::path::Path;

use candle_core::{DType, Device};

use crate::spec::{weights_from_bytes, ModelSpec};
use crate::{Result, Sequential};

/// Name under which the default model appears in reports.
pub const MNIST_CNN: &str = "builtin:mnist-cnn";

/// One shipped model: its name (`builtin:<name>`), what it is, and its files as compiled in.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The name after `builtin:`.
    pub name: &'static str,
    pub summary: &'static str,
    /// Whether the shipped data (MNIST test images) is what it classifies, so that it needs no
    /// `--dataset`.
    pub shipped_data: bool,
    /// The spec, then its weights, by file name.
    pub files: &'static [(&'static str, &'static [u8])],
}

macro_rules! entry {
    ($name:literal, $shipped:literal, $summary:literal) => {
        Entry {
            name: $name,
            summary: $summary,
            shipped_data: $shipped,
            files: &[
                (concat!($name, ".toml"), include_bytes!(concat!("../zoo/", $name, ".toml"))),
                (concat!($name, ".safetensors"), include_bytes!(concat!("../zoo/", $name, ".safetensors"))),
            ],
        }
    };
}

/// Every shipped model; the first is the default.
pub const ENTRIES: &[Entry] = &[
    entry!("mnist-cnn", true, "MNIST, conv16-pool-conv32-pool-fc100-fc10, standard training (the default model)"),
    entry!("mnist-standard", true, "MNIST, conv32/s2-conv64/s2-fc128-fc10 with leaky ReLU, standard training"),
    entry!("mnist-robust", true, "MNIST, the same architecture, PGD adversarial training at L∞ ε = 0.3"),
    entry!("fashion-mnist-standard", false, "Fashion-MNIST, conv32/s2-conv64/s2-fc128-fc10, standard training"),
    entry!(
        "fashion-mnist-robust",
        false,
        "Fashion-MNIST, the same architecture, PGD adversarial training at L∞ ε = 0.1"
    ),
];

/// The files behind [`mnist_cnn`], by name, as compiled in.
pub const MNIST_CNN_FILES: &[(&str, &[u8])] = ENTRIES[0].files;

impl Entry {
    /// `builtin:<name>`, as reports name it.
    pub fn id(&self) -> String {
        format!("builtin:{}", self.name)
    }

    /// The model, built on `device`.
    pub fn load(&self, device: &Device) -> Result<Sequential> {
        let [(spec_name, spec), (weights_name, weights)] = self.files else {
            unreachable!("an entry has a spec and its weights")
        };
        let source = format!("models/zoo/{spec_name}");
        let text = std::str::from_utf8(spec).expect("shipped specs are UTF-8");
        let spec = ModelSpec::parse(text, Path::new(&source))?;
        let weights = weights_from_bytes(weights, Path::new(&format!("models/zoo/{weights_name}")))?;
        spec.build(&weights, Path::new(&self.id()), DType::F32, device)
    }
}

/// Whether a `--model` argument needs a `--dataset` (it is not a shipped MNIST model).
pub fn needs_dataset(arg: &Path) -> bool {
    !find(arg).is_some_and(|e| e.shipped_data)
}

/// The shipped model a `--model` argument names (`builtin:<name>`), if it names one.
pub fn find(arg: &Path) -> Option<&'static Entry> {
    let name = arg.to_str()?.strip_prefix("builtin:")?;
    ENTRIES.iter().find(|e| e.name == name)
}

/// The default MNIST classifier: conv16-pool-conv32-pool-fc100-fc10, trained on the MNIST training set.
pub fn mnist_cnn(device: &Device) -> Result<Sequential> {
    ENTRIES[0].load(device)
}
