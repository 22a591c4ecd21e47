//! Sample data compiled into the binary (see `datasets/data/NOTICE.md`).

use std::path::Path;

use crate::{idx, ImageSet, Result};

/// The first 1,000 MNIST test images and labels.
pub fn mnist_test_1k() -> Result<ImageSet> {
    let images = include_bytes!("../data/mnist-test-1k/t10k-images-idx3-ubyte.gz");
    let labels = include_bytes!("../data/mnist-test-1k/t10k-labels-idx1-ubyte.gz");
    let mut set = idx::from_bytes(
        images,
        labels,
        Path::new("t10k-images-idx3-ubyte.gz"),
        Path::new("t10k-labels-idx1-ubyte.gz"),
    )?;
    set.source = "builtin:mnist-test-1k".into();
    Ok(set)
}
