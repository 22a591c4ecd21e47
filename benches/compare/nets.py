"""The networks people evaluate, for the side-by-side comparison on CIFAR-shaped inputs.

Each is built with random weights from a fixed seed (speed does not depend on the weights), wrapped
with the CIFAR-10 normalization inside, and written three ways into OUT/<name>/:
  model.onnx   torch.onnx.export (TorchScript exporter, opset 17, dynamic batch axis)
  model.pt     the wrapped module's state_dict, for the PyTorch side
  data.npz     `images` (128, 3, 32, 32) float32 in [0, 1] and `labels` = the network's own
               predictions, so every sample starts correctly classified

usage: python nets.py OUT [NAME...]     (names: resnet18 wrn16_4 vit mobilenetv2 wrn28_10; default all)
env: IMAGES (128), the number of images in data.npz
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2471, 0.2435, 0.2616)


class Normalized(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.net = net

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def resnet18():
    """torchvision's ResNet-18 with the CIFAR stem: 3x3 convolution, no max pool."""
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return net


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(F.relu(self.bn2(y)))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """Pre-activation WideResNet-depth-k as in RobustBench (depth 16, widen 4: 16-64-128-256)."""

    def __init__(self, depth=16, k=4, classes=10):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        self.conv = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for g in range(3):
            for i in range(n):
                cin = widths[g] if i == 0 else widths[g + 1]
                blocks.append(PreActBlock(cin, widths[g + 1], (1 if g == 0 else 2) if i == 0 else 1))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], classes)

    def forward(self, x):
        x = self.blocks(self.conv(x))
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) / (d // h) ** 0.5, dim=-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """A 2-block vision transformer: patch 4, dim 64, 4 heads, class token."""

    def __init__(self, dim=64, depth=2, heads=4, patch=4, classes=10):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (32 // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.ln(self.blocks(x))[:, 0])


def mobilenetv2():
    return torchvision.models.mobilenet_v2(num_classes=10)


def wrn28_10():
    return WideResNet(depth=28, k=10)


NETS = {"resnet18": resnet18, "wrn16_4": WideResNet, "vit": ViT, "mobilenetv2": mobilenetv2, "wrn28_10": wrn28_10}


def randomize_batchnorm(m, gen):
    """Running statistics that are not the identity, as a trained network has."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            mod.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            mod.weight.data.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            mod.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


def build(name):
    torch.manual_seed(0)
    model = Normalized(NETS[name]()).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    return model


def main():
    out = sys.argv[1]
    names = sys.argv[2:] or ["resnet18", "wrn16_4", "vit", "mobilenetv2"]
    for name in names:
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model = build(name)
        torch.save(model.state_dict(), os.path.join(d, "model.pt"))
        x = torch.rand(int(os.environ.get("IMAGES", "128")), 3, 32, 32, generator=torch.Generator().manual_seed(2))
        torch.onnx.export(
            model,
            x[:2],
            os.path.join(d, "model.onnx"),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )
        with torch.no_grad():
            labels = model(x).argmax(1)
        np.savez(os.path.join(d, "data.npz"), images=x.numpy(), labels=labels.numpy().astype(np.int64))
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params / 1e6:.2f} M parameters -> {d}")


if __name__ == "__main__":
    main()
