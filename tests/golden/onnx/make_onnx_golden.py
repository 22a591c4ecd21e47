"""Golden ONNX files from PyTorch, for the tests of Gauntlet's ONNX executor (models/src/onnx/).

Run from the repository root:
    python tests/golden/onnx/make_onnx_golden.py
Needs: torch, torchattacks, onnx, onnxruntime, numpy, safetensors, e.g. in a venv outside the repository:
    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install torch torchattacks onnx onnxruntime numpy safetensors
    /work/venv-torch/bin/python tests/golden/onnx/make_onnx_golden.py
Takes about 2 minutes on CPU (mostly PGD on 1,000 images). Made with torch 2.15.0, torchattacks 3.5.1,
onnx 1.23.2, onnxruntime 1.31.1; two runs write byte-identical files.
Deterministic: every model and input comes from a fixed seed. Everything is exported with the TorchScript
exporter (torch.onnx.export(..., dynamo=False, opset_version=17)). Every .npz is written with np.savez
(stored, not deflated: ndarray-npy's "npz" feature reads it); float arrays are float32, labels int64.

Writes into tests/golden/onnx/:
  (The three architectures take pixels in [0, 1] and normalise inside, (x - 0.5) / 0.25 (Sub, Div); their
  Conv/Linear weights are He-normal and their inputs vary as a whole, so that the logits depend clearly on
  the input; see reinit() and images().)
  resnet_cifar.onnx      ResNet-style CIFAR net (3x32x32): Conv, BatchNormalization (exported with
                         TrainingMode.PRESERVE, so the BatchNormalization nodes stay unfused), Relu,
                         padded MaxPool, residual Adds, a stride-2 block with a 1x1 conv+BN shortcut,
                         GlobalAveragePool, Flatten, Gemm
  mobilenet_block.onnx   MobileNetV3-style (3x32x32): stride-2 stem, inverted residual blocks (1x1 expand,
                         depthwise 3x3, one with stride 2), squeeze-excite (GlobalAveragePool, 1x1 convs,
                         HardSigmoid, Mul), HardSwish, ReLU6 (Clip), residual Add, AveragePool,
                         GlobalAveragePool, nn.Dropout, Gemm. Exported in the default TrainingMode.EVAL, so its
                         BatchNorms are folded into the preceding Convs and Dropout disappears (as in most
                         real-world exports)
  vit_block.onnx         tiny ViT (3x32x32): 4x4/4 patch-embedding Conv, tokens, class-token Concat,
                         position-embedding Add, 2 hand-written transformer blocks (dim 24, LayerNormalization, q/k/v
                         MatMul+Add, dynamic Shape->Gather->Concat->Reshape into 4 heads, scaled q@k^T,
                         Softmax, @v, projection, residuals, MLP with exact (Erf) GELU), final
                         LayerNormalization, class-token Gather, Gemm head
  <name>_io.npz          for each of the three above: x (8,3,32,32) in [0,1], labels (8,), logits (torch,
                         float32 model), grad = d(sum_batch CE(logits, labels))/dx, grad_margin =
                         d(sum_batch max_{i!=y} z_i - z_y)/dx (both computed in a float64 copy of the
                         model, stored as float32), ort_logits (onnxruntime CPU on the same x)
  mnist_cnn.onnx         the shipped MNIST CNN (models/zoo/mnist-cnn.safetensors, loaded as
                         tests/golden/make_golden.py does), input (N,1,28,28) pixels in [0,1]: the
                         normalisation (x - 0.1307) / 0.3081 is INSIDE the graph (Sub, Div), output logits
  mnist_cnn_torchattacks.json  on the shipped 1,000 MNIST test images: torch clean accuracy, torchattacks FGSM
                         and PGD robust accuracies (same settings as make_golden.py's mnist_torchattacks.json),
                         onnxruntime clean accuracy of mnist_cnn.onnx
  Small diagnostics models (each described where diagnostics() makes it; all normalise (x - 0.5) / 0.25
  inside, He-normal weights, inputs from images()); their io.npz hold x, labels,
  logits (torch) and ort_logits (onnxruntime), plus as noted:
  softmax_head.onnx      1x28x28 CNN ending in Softmax; output named "probs". softmax_head_io.npz (4 inputs):
                         logits BEFORE the softmax, probs, ort_probs (instead of ort_logits), grad = CE grad
                         computed on the pre-softmax logits
  argmax_inside.onnx     1x28x28, Floor and ArgMax (-> Cast) on the forward path, each feeding a Mul;
                         argmax_inside_io.npz (4 inputs) with grad (torch: zero through Floor/ArgMax)
  unsupported_ops.onnx   1x28x28 with GridSample, CumSum and Det on named nodes; unsupported_ops.json lists
                         those nodes' names and op types (and every op type of the graph);
                         unsupported_ops_io.npz (4 inputs; onnxruntime runs it)
  nhwc_input.onnx        input (N, 28, 28, 1) NHWC, Transpose inside; nhwc_input_io.npz (4 inputs, NHWC x,
                         grad)
  dynamic_hw.onnx        fully convolutional + GlobalAveragePool, symbolic batch, height and width (traced at
                         32x32); dynamic_hw_io.npz for 2 inputs of 3x40x40, with grad
  fixed_batch1.onnx      no dynamic axes: declared input (1, 1, 28, 28), Flatten, Gemm; fixed_batch1_io.npz
                         for a batch of 5 computed by torch (ort_logits: onnxruntime one sample at a time,
                         since it rejects batch 5 against the declared 1), with grad
"""
import copy
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.dirname(HERE)
sys.path.insert(0, GOLDEN)
sys.dont_write_bytecode = True  # no __pycache__ beside make_golden.py
import make_golden  # noqa: E402  (the shipped model and images, loaded exactly as for the other goldens)

warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy TorchScript exporter
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
warnings.filterwarnings("ignore", message=".*constant folding be turned off.*")  # PRESERVE on an eval model

OPSET = 17
DYN_BATCH = {"input": {0: "batch"}, "logits": {0: "batch"}}
MAX_DIFF = {}  # model name -> max |torch - onnxruntime|


def path(name):
    return os.path.join(HERE, name)


def margin(logits, y):
    """max_{i != y} z_i - z_y per sample."""
    z_y = logits.gather(1, y[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -1e9).amax(1)
    return other - z_y


def export(model, example, name, dynamic_axes=DYN_BATCH, output="logits",
           training=torch.onnx.TrainingMode.EVAL):
    model.eval()
    kwargs = {"dynamic_axes": dynamic_axes} if dynamic_axes is not None else {}
    torch.onnx.export(model, (example,), path(name), dynamo=False, opset_version=OPSET,
                      input_names=["input"], output_names=[output], training=training, **kwargs)
    onnx.checker.check_model(onnx.load(path(name)), full_check=True)


def ort_run(name, x):
    sess = ort.InferenceSession(path(name), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.numpy()})[0]


def grads(model, x, y):
    """(CE grad, margin grad) of the batch sums w.r.t. x, computed in a float64 copy of the model."""
    m = copy.deepcopy(model).double().eval()
    xv = x.double().clone().requires_grad_(True)
    F.cross_entropy(m(xv), y, reduction="sum").backward()
    g_ce = xv.grad.detach().clone()
    xv.grad = None
    margin(m(xv), y).sum().backward()
    return g_ce.float().numpy(), xv.grad.detach().float().numpy()


def record(name, torch_out, ort_out):
    d = float(np.abs(torch_out - ort_out).max())
    MAX_DIFF[name] = d
    print(f"{name}: max |torch - ort| = {d:.3e}")


def reinit(model):
    """He-normal weights (fan_in, ReLU gain) and small random biases for every Conv2d and Linear. PyTorch's
    default init shrinks the signal layer by layer: the logits would barely depend on the input, and a
    wrongly executed early layer could hide inside the comparison tolerance."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                if mod.bias is not None:
                    mod.bias.uniform_(-0.1, 0.1)


def images(g, n, c, h, w):
    """n random images in [0, 1] that differ from each other as a whole, not only pixel by pixel (i.i.d.
    pixel noise averages out under global pooling): a convex combination of a per-image, per-channel
    level, a coarse random pattern upsampled from (h/8, w/8) and pixel noise."""
    level = torch.rand(n, c, 1, 1, generator=g)
    coarse = F.interpolate(torch.rand(n, c, h // 8, w // 8, generator=g), size=(h, w), mode="bilinear",
                           align_corners=False)
    noise = torch.rand(n, c, h, w, generator=g)
    mix = torch.rand(n, 3, 1, 1, generator=g) + 0.2
    mix = mix / mix.sum(1, keepdim=True)
    return (mix[:, 0:1] * level + mix[:, 1:2] * coarse + mix[:, 2:3] * noise).clamp(0, 1)


def randomize_bn(model):
    """Non-trivial running statistics and affine parameters for every BatchNorm."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)


# ---------------------------------------------------------------------------------------------
# 1. Three small architectures
# ---------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)     # 32 -> 16, padded
        self.block1 = BasicBlock(8, 8, 1)                    # identity shortcut
        self.block2 = BasicBlock(8, 16, 2)                   # 16 -> 8, 1x1 conv + BN shortcut
        self.block3 = BasicBlock(16, 16, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)                   # GlobalAveragePool
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(self.stem((x - 0.5) / 0.25))
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(F.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cexp, cout, stride, se, act):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(cin, cexp, 1, bias=False), nn.BatchNorm2d(cexp), act())
        self.dw = nn.Sequential(nn.Conv2d(cexp, cexp, 3, stride=stride, padding=1, groups=cexp, bias=False),
                                nn.BatchNorm2d(cexp), act())
        self.se = SqueezeExcite(cexp, max(4, cexp // 4)) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(cexp, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = self.project(self.se(self.dw(self.expand(x))))
        return x + h if self.residual else h


class MobileNetBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.Hardswish())                                # 32 -> 16
        self.b1 = InvertedResidual(8, 16, 8, 1, se=True, act=nn.ReLU6)          # residual Add, ReLU6 -> Clip
        self.b2 = InvertedResidual(8, 24, 16, 2, se=True, act=nn.Hardswish)     # depthwise stride 2: 16 -> 8
        self.b3 = InvertedResidual(16, 32, 16, 1, se=False, act=nn.Hardswish)   # residual Add
        self.pool = nn.AvgPool2d(2)                                              # AveragePool 8 -> 4
        self.gap = nn.AdaptiveAvgPool2d(1)                                       # GlobalAveragePool
        self.drop = nn.Dropout(0.2)                                              # eval: identity
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.b3(self.b2(self.b1(self.stem((x - 0.5) / 0.25))))
        x = torch.flatten(self.gap(self.pool(x)), 1)
        return self.fc(self.drop(x))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape  # traced sizes: Shape -> Gather -> (Div) -> Unsqueeze -> Concat -> Reshape
        q = self.q(x).reshape(B, N, self.heads, C // self.heads).transpose(1, 2)
        k = self.k(x).reshape(B, N, self.heads, C // self.heads).transpose(1, 2)
        v = self.v(x).reshape(B, N, self.heads, C // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * self.scale
        att = att.softmax(dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(o)


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))  # exact (erf) GELU

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViTBlock(nn.Module):
    def __init__(self, dim=24, heads=4, depth=2, hidden=48):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)                  # 32x32 -> 8x8 = 64 tokens
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 65, dim) * 0.5)
        self.blocks = nn.ModuleList([TransformerBlock(dim, heads, hidden) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)
        with torch.no_grad():  # non-trivial LayerNorm affine parameters
            for mod in self.modules():
                if isinstance(mod, nn.LayerNorm):
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        x = self.patch((x - 0.5) / 0.25).flatten(2).transpose(1, 2)               # (B, 64, dim)
        B = x.shape[0]
        x = torch.cat([self.cls.expand(B, -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x)[:, 0])


def architectures():
    specs = [
        ("resnet_cifar", ResNetCifar, 1, torch.onnx.TrainingMode.PRESERVE),
        ("mobilenet_block", MobileNetBlock, 2, torch.onnx.TrainingMode.EVAL),
        ("vit_block", ViTBlock, 3, torch.onnx.TrainingMode.EVAL),
    ]
    for name, cls, seed, training in specs:
        torch.manual_seed(seed)
        model = cls()
        reinit(model)
        randomize_bn(model)
        model.eval()
        g = torch.Generator().manual_seed(100 + seed)
        x = images(g, 8, 3, 32, 32)
        y = torch.randint(0, 10, (8,), generator=g)
        export(model, x[:2], f"{name}.onnx", training=training)
        with torch.no_grad():
            logits = model(x).numpy()
        g_ce, g_margin = grads(model, x, y)
        ort_logits = ort_run(f"{name}.onnx", x)
        record(name, logits, ort_logits)
        np.savez(path(f"{name}_io.npz"), x=x.numpy(), labels=y.numpy(), logits=logits, grad=g_ce,
                 grad_margin=g_margin, ort_logits=ort_logits)


# ---------------------------------------------------------------------------------------------
# 2. The shipped MNIST CNN and torchattacks on it
# ---------------------------------------------------------------------------------------------

def mnist():
    m, x, y, correct = make_golden.shipped()
    export(m, x[:2], "mnist_cnn.onnx")
    ort_logits = ort_run("mnist_cnn.onnx", x)
    with torch.no_grad():
        logits = m(x).numpy()
    record("mnist_cnn", logits, ort_logits)
    eps_list = [0.05, 0.1, 0.2, 0.3]
    # Exactly make_golden.py's mnist_reference(): FGSM, then PGD after torch.manual_seed(0), for each eps.
    out = {"samples": len(y), "clean_accuracy": correct.float().mean().item(),
           "onnxruntime_clean_accuracy": float((ort_logits.argmax(1) == y.numpy()).mean()),
           "onnxruntime_max_abs_logit_diff": MAX_DIFF["mnist_cnn"],
           "fgsm": {}, "pgd": {},
           "pgd_params": {"norm": "Linf", "steps": 40, "alpha": 0.01, "random_start": True, "seed": 0,
                          "seeding": "torch.manual_seed(0) right before each eps's PGD run"},
           "robust_accuracy": "fraction of all samples classified correctly both clean and attacked",
           "torch_threads": 2, "torch": torch.__version__, "torchattacks": torchattacks.__version__,
           "onnxruntime": ort.__version__}
    for eps in eps_list:
        adv = torchattacks.FGSM(m, eps=eps)(x, y)
        with torch.no_grad():
            out["fgsm"][str(eps)] = ((m(adv).argmax(1) == y) & correct).float().mean().item()
        torch.manual_seed(0)
        adv = torchattacks.PGD(m, eps=eps, alpha=0.01, steps=40, random_start=True)(x, y)
        with torch.no_grad():
            out["pgd"][str(eps)] = ((m(adv).argmax(1) == y) & correct).float().mean().item()
    with open(path("mnist_cnn_torchattacks.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    with open(os.path.join(GOLDEN, "mnist_torchattacks.json")) as f:
        ref = json.load(f)
    same = all(ref[k] == out[k] for k in ("samples", "clean_accuracy", "fgsm", "pgd"))
    print("mnist_cnn_torchattacks.json", "matches" if same else "DIFFERS FROM",
          "tests/golden/mnist_torchattacks.json")


# ---------------------------------------------------------------------------------------------
# 3. Diagnostics models
# ---------------------------------------------------------------------------------------------

class SoftmaxHead(nn.Module):
    """Ends in Softmax: its ONNX output ('probs') is probabilities, not logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)   # 28 -> 14
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def logits(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv((x - 0.5) / 0.25)), 2), 1))

    def forward(self, x):
        return F.softmax(self.logits(x), dim=1)


class LogitsOf(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.logits(x)


class ArgmaxInside(nn.Module):
    """Non-differentiable ops on the forward path: Floor (input quantised to 4 levels) and ArgMax (channel
    index of the strongest feature), both multiplying differentiable features. torch's gradient through
    them is zero."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)   # 28 -> 14
        self.gate = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x):
        h = F.relu(self.conv((x - 0.5) / 0.25))                               # (N, 4, 14, 14)
        xq = torch.floor(x * 4) / 4                            # Floor
        h = h * torch.sigmoid(self.gate(xq))                   # quantised branch feeding a Mul
        idx = torch.argmax(h, dim=1, keepdim=True).float()     # ArgMax -> Cast
        h = h * (1 + 0.25 * idx)                               # ... feeding a Mul
        return self.fc(torch.flatten(F.max_pool2d(h, 2), 1))


class Unsupported(nn.Module):
    """Operators an image-classifier executor is unlikely to support: GridSample, CumSum, Det."""

    class Warp(nn.Module):
        def forward(self, x, grid):
            return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=3)

    class Determinant(nn.Module):
        def forward(self, x):
            return torch.linalg.det(x)

    def __init__(self):
        super().__init__()
        # Sampling grid: a fixed 14x14 base grid (homogeneous coordinates) times a learned affine map.
        lin = (torch.arange(14, dtype=torch.float32) + 0.5) / 7 - 1
        gy, gx = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("base", torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, 14, 14, 3))
        self.theta = nn.Parameter(torch.tensor([[0.9, 0.1, 0.05], [-0.1, 0.9, -0.05]]))
        self.warp = Unsupported.Warp()
        self.cumulative = Unsupported.Cumulative()
        self.determinant = Unsupported.Determinant()
        self.conv = nn.Conv2d(1, 4, 2, stride=2)               # 14 -> 7
        self.fc = nn.Linear(4 * 7 * 7 + 4, 10)

    def forward(self, x):
        grid = (self.base @ self.theta.t()).expand(x.shape[0], 14, 14, 2)
        x = self.warp(x, grid)                                 # GridSample: (N, 1, 28, 28) -> (N, 1, 14, 14)
        x = self.cumulative(x) / 7 - 1                         # CumSum
        h = torch.tanh(self.conv(x))                           # (N, 4, 7, 7)
        d = self.determinant(h[:, :, :3, :3])                  # Det over 4 3x3 matrices per sample
        return self.fc(torch.cat([torch.flatten(h, 1), d], dim=1))


class NhwcInput(nn.Module):
    """Input (N, 28, 28, 1), permuted to NCHW inside (a Transpose right after the input)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv((x - 0.5) / 0.25)), 2), 1))


class DynamicHW(nn.Module):
    """Fully convolutional, global average pool: valid for any H, W."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(8, 10, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1((x - 0.5) / 0.25))))
        return torch.flatten(self.gap(self.conv3(x)), 1)


class FixedBatch1(nn.Module):
    """Exported without dynamic axes (declared input shape (1, 1, 28, 28)); flatten(1) -> Flatten and a Gemm,
    so the graph itself is valid for any batch size."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv((x - 0.5) / 0.25)), 2), 1))


def diagnostics():
    def mnist_like(seed, n=8, shape=(1, 28, 28)):
        g = torch.Generator().manual_seed(seed)
        if shape[-1] == 1:  # NHWC
            x = images(g, n, 1, shape[0], shape[1]).permute(0, 2, 3, 1).contiguous()
        else:
            x = images(g, n, *shape)
        return x, torch.randint(0, 10, (n,), generator=g)

    # softmax_head: a model whose output is probabilities (trailing Softmax), to test detecting/stripping it.
    torch.manual_seed(11)
    m = SoftmaxHead()
    reinit(m)
    m.eval()
    x, y = mnist_like(211, n=4)
    export(m, x[:2], "softmax_head.onnx", dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}},
           output="probs")
    with torch.no_grad():
        logits = m.logits(x).numpy()
        probs = m(x).numpy()
    g_ce, _ = grads(LogitsOf(m), x, y)
    ort_probs = ort_run("softmax_head.onnx", x)
    record("softmax_head", probs, ort_probs)
    np.savez(path("softmax_head_io.npz"), x=x.numpy(), labels=y.numpy(), logits=logits, probs=probs,
             grad=g_ce, ort_probs=ort_probs)

    # argmax_inside: non-differentiable ops (Floor, ArgMax) on the forward path, for gradient checks.
    torch.manual_seed(12)
    m = ArgmaxInside()
    reinit(m)
    m.eval()
    x, y = mnist_like(212, n=4)
    export(m, x[:2], "argmax_inside.onnx")
    with torch.no_grad():
        logits = m(x).numpy()
    g_ce, _ = grads(m, x, y)
    ort_logits = ort_run("argmax_inside.onnx", x)
    record("argmax_inside", logits, ort_logits)
    np.savez(path("argmax_inside_io.npz"), x=x.numpy(), labels=y.numpy(), logits=logits, grad=g_ce,
             ort_logits=ort_logits)

    # unsupported_ops: GridSample, CumSum, Det on named nodes, for the "unsupported operator" error path.
    torch.manual_seed(13)
    m = Unsupported()
    reinit(m)
    m.eval()
    x, y = mnist_like(213, n=4)
    export(m, x[:2], "unsupported_ops.onnx")
    graph = onnx.load(path("unsupported_ops.onnx")).graph
    wanted = {"GridSample", "CumSum", "Det"}
    nodes = [{"name": n.name, "op_type": n.op_type} for n in graph.node if n.op_type in wanted]
    assert {n["op_type"] for n in nodes} == wanted, nodes
    with open(path("unsupported_ops.json"), "w") as f:
        json.dump({"model": "unsupported_ops.onnx", "opset": OPSET, "unsupported_nodes": nodes,
                   "all_op_types": sorted({n.op_type for n in graph.node})}, f, indent=2)
        f.write("\n")
    with torch.no_grad():
        logits = m(x).numpy()
    ort_logits = ort_run("unsupported_ops.onnx", x)
    record("unsupported_ops", logits, ort_logits)
    np.savez(path("unsupported_ops_io.npz"), x=x.numpy(), labels=y.numpy(), logits=logits, ort_logits=ort_logits)

    # nhwc_input: input layout (N, 28, 28, 1), for layout detection / LoadOptions channel order.
    torch.manual_seed(14)
    m = NhwcInput()
    reinit(m)
    m.eval()
    x, y = mnist_like(214, n=4, shape=(28, 28, 1))
    export(m, x[:2], "nhwc_input.onnx")
    with torch.no_grad():
        logits = m(x).numpy()
    g_ce, _ = grads(m, x, y)
    ort_logits = ort_run("nhwc_input.onnx", x)
    record("nhwc_input", logits, ort_logits)
    np.savez(path("nhwc_input_io.npz"), x=x.numpy(), labels=y.numpy(), logits=logits, grad=g_ce,
             ort_logits=ort_logits)

    # dynamic_hw: symbolic batch, height and width (exported at 32x32, checked at 40x40).
    torch.manual_seed(15)
    m = DynamicHW()
    reinit(m)
    m.eval()
    x32, _ = mnist_like(215, n=2, shape=(3, 32, 32))
    export(m, x32, "dynamic_hw.onnx",
           dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}})
    x, y = mnist_like(216, n=2, shape=(3, 40, 40))
    with torch.no_grad():
        logits = m(x).numpy()
    g_ce, _ = grads(m, x, y)
    ort_logits = ort_run("dynamic_hw.onnx", x)
    record("dynamic_hw", logits, ort_logits)
    np.savez(path("dynamic_hw_io.npz"), x=x.numpy(), labels=y.numpy(), logits=logits, grad=g_ce,
             ort_logits=ort_logits)

    # fixed_batch1: static input shape (1, 1, 28, 28), for batch-size handling; io for a batch of 5.
    torch.manual_seed(16)
    m = FixedBatch1()
    reinit(m)
    m.eval()
    x, y = mnist_like(217, n=5)
    export(m, x[:1], "fixed_batch1.onnx", dynamic_axes=None)
    with torch.no_grad():
        logits = m(x).numpy()
    g_ce, _ = grads(m, x, y)
    # onnxruntime rejects a batch of 5 against the declared batch 1: run it one sample at a time.
    ort_logits = np.concatenate([ort_run("fixed_batch1.onnx", x[i : i + 1]) for i in range(len(x))])
    record("fixed_batch1", logits, ort_logits)
    np.savez(path("fixed_batch1_io.npz"), x=x.numpy(), labels=y.numpy(), logits=logits, grad=g_ce,
             ort_logits=ort_logits)


if __name__ == "__main__":
    torch.set_num_threads(2)  # as make_golden.py's __main__, so float sums match its runs
    architectures()
    diagnostics()
    mnist()
    total = sum(os.path.getsize(path(f)) for f in os.listdir(HERE) if os.path.isfile(path(f)))
    print(f"total size of tests/golden/onnx: {total} bytes")
