"""NumPy-written archives for the dataset tests: the first 8 shipped MNIST test images, saved the
two ways numpy saves (np.savez: stored; np.savez_compressed: deflated).

Run from the repository root:  python tests/golden/npz/make_npz.py   (needs numpy)
"""
import gzip
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "datasets", "data", "mnist-test-1k")


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


images = idx("t10k-images-idx3-ubyte.gz")[:8]          # (8, 28, 28) uint8
labels = idx("t10k-labels-idx1-ubyte.gz")[:8].astype(np.int64)
np.savez(os.path.join(HERE, "mnist8.npz"), images=images, labels=labels)
np.savez_compressed(os.path.join(HERE, "mnist8_compressed.npz"), images=images, labels=labels)
