"""Shared pieces of the side-by-side comparison: the LeNet and the MNIST reader."""
import gzip
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet(nn.Module):
    """advertorch's LeNet5Madry-style MNIST network: conv32-pool-conv64-pool-fc200-fc10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.linear1 = nn.Linear(64 * 7 * 7, 200)
        self.linear2 = nn.Linear(200, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.linear2(F.relu(self.linear1(torch.flatten(x, 1))))


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4 : 4 + 4 * nd])
    return np.frombuffer(data[4 + 4 * nd :], dtype=np.uint8).reshape(dims)


def mnist(images_path):
    labels_path = images_path.replace("images-idx3-ubyte", "labels-idx1-ubyte")
    x = torch.tensor(read_idx(images_path), dtype=torch.float32)[:, None] / 255.0
    y = torch.tensor(read_idx(labels_path), dtype=torch.int64)
    return x, y
