"""Trains the comparison LeNet in PyTorch and writes its weights as safetensors for both sides.

usage: prepare.py OUT_DIR TRAIN_IMAGES   (TRAIN_IMAGES: an MNIST `…images-idx3-ubyte[.gz]`)
"""
import os
import shutil
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from common import LeNet, mnist

out, train = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
x, y = mnist(train)
model = LeNet()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(int(os.environ.get("EPOCHS", "1"))):
    perm = torch.randperm(len(y))
    for i in range(0, len(y), 128):
        idx = perm[i : i + 128]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
os.makedirs(out, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "lenet.safetensors"))
shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "lenet.toml"), os.path.join(out, "lenet.toml"))
print(f"wrote {out}/lenet.safetensors (trained on {len(y)} images)", file=sys.stderr)
