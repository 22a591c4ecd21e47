"""PyTorch to Gauntlet: export a classifier to ONNX the way Gauntlet reads best, and check it.

    from gauntlet.torch import export
    check = export(model, example_batch, "model.onnx", normalize=((0.4914, 0.4822, 0.4465),
                                                                  (0.2471, 0.2435, 0.2616)))

torch is imported only here; the rest of the package does not need it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from . import _native

OPSET = 17


@dataclass(frozen=True)
class ExportCheck:
    """How closely the exported file, run by Gauntlet, reproduces the module on the example batch:
    the largest differences of the logits and of the input gradient of the summed cross-entropy,
    each relative to the module's largest magnitude."""

    path: str
    logits_difference: float
    gradient_difference: float

    def __str__(self) -> str:
        return (f"{self.path}: logits differ by {self.logits_difference:.2e}, input gradients by "
                f"{self.gradient_difference:.2e} (relative to PyTorch's largest value)")


def export(
    module,
    example_input,
    path: str,
    normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
    labels=None,
    tolerance: float = 1e-3,
    verbose: bool = True,
) -> ExportCheck:
    """Exports ``module`` (a classifier taking pixel-space images in [0, 1] after the optional
    ``normalize=(mean, std)``, which is put inside the graph) to ONNX at ``path``: eval mode,
    opset 17, a dynamic batch axis, input ``input`` and output ``logits``. Then runs the file
    through Gauntlet on ``example_input`` and compares logits and input gradients with the
    module's own; raises ``ValueError`` when either differs by more than ``tolerance``
    (relative), and returns the :class:`ExportCheck` otherwise."""
    import torch  # optional dependency

    module = module.eval()
    net = module
    if normalize is not None:
        mean, std = normalize
        net = _Normalized(module, mean, std, torch)
    x = example_input.detach().to(torch.float32).cpu()
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that needs no onnxscript; torch warns that it is old.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net, (x,), path, opset_version=OPSET, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
        )
    xg = x.clone().requires_grad_(True)
    logits = net(xg)
    y = logits.argmax(1) if labels is None else torch.as_tensor(labels, dtype=torch.long)
    loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xg)
    ours_logits, ours_grad = _native.logits_and_grad(path, x.numpy().ravel().tolist(), tuple(x.shape), [int(v) for v in y])
    ref_logits, ref_grad = logits.detach().numpy().ravel(), grad.numpy().ravel()

    def rel(a, b):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))

    check = ExportCheck(path, rel(ours_logits, ref_logits), rel(ours_grad, ref_grad))
    if verbose:
        print(check)
    if not (check.logits_difference <= tolerance and check.gradient_difference <= tolerance):
        raise ValueError(f"{check}: above the tolerance {tolerance}; the file does not reproduce the module")
    return check


def _Normalized(module, mean, std, torch):
    class Normalized(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, x):
            return self.inner((x - self.mean) / self.std)

    return Normalized().eval()
