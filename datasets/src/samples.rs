//! Sample data compiled into the binary (see `datasets/data/NOTICE.md`).

use std::path::Path;

use crate::{idx, ImageSet, Result};

const MNIST_IMAGES: &[u8] = include_bytes!("../data/mnist-test-1k/t10k-images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] = include_bytes!("../data/mnist-test-1k/t10k-labels-idx1-ubyte.gz");

/// The files behind [`mnist_test_1k`], by name, as compiled in.
pub const MNIST_TEST_1K_FILES: &[(&str, &[u8])] =
    &[("t10k-images-idx3-ubyte.gz", MNIST_IMAGES), ("t10k-labels-idx1-ubyte.gz", MNIST_LABELS)];

/// The first 1,000 MNIST test images and labels.
pub fn mnist_test_1k() -> Result<ImageSet> {
    let (images, labels) = (MNIST_IMAGES, MNIST_LABELS);
    let mut set = idx::from_bytes(
        images,
        labels,
        Path::new("t10k-images-idx3-ubyte.gz"),
        Path::new("t10k-labels-idx1-ubyte.gz"),
    )?;
    set.source = "builtin:mnist-test-1k".into();
    Ok(set)
}
