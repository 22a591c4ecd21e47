"""Gauntlet: adversarial-robustness testing for image classifiers, from Python.

    import gauntlet
    report = gauntlet.evaluate("model.onnx", images, labels, attacks=["fgsm", "pgd:steps=40"],
                               eps=[0.1, 0.2, 0.3])
    print(report.clean_accuracy, report.robust_accuracy("pgd", 0.3))
    assert report.gate("gate.toml").passed

Every evaluation runs the same Rust engine as the `gauntlet` command line (which this package
also installs), so the numbers are the command line's. Errors raise ``ValueError`` (bad input:
a corrupt model, a wrong shape, a bad option) or ``FileNotFoundError`` with the command line's
one-line message; Ctrl-C raises ``KeyboardInterrupt`` after the current batch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from . import _native
from ._report import GateOutcome, Report

__all__ = ["evaluate", "run_cli", "Report", "GateOutcome", "__version__"]
__version__ = _native.version()

PathLike = Union[str, "os.PathLike[str]"]


def run_cli(args: Sequence[str]) -> int:
    """Runs ``gauntlet ARGS...`` in this process and returns its exit status (0 ok, 1 a gate
    rule failed, 2 bad input, 3 an integrity check failed under --strict). Output goes to this
    process's stdout and stderr. Ctrl-C stops the run after its current batch and raises
    ``KeyboardInterrupt``."""
    status, _, _ = _call([str(a) for a in args], silent=False)
    return status


def _call(args: list, silent: bool) -> tuple:
    result: list = []
    # Forget an earlier stop request here, not in the worker: a Ctrl-C that arrives before the
    # worker has started must still stop the run.
    _native.prepare()
    worker = threading.Thread(target=lambda: result.append(_native.run_cli(args, silent)), daemon=True)
    worker.start()
    interrupted = False
    while worker.is_alive():
        try:
            worker.join(0.1)
        except KeyboardInterrupt:
            interrupted = True
            _native.request_stop()
    if interrupted:
        raise KeyboardInterrupt("gauntlet stopped after its current batch")
    return result[0]


def _raise(status: int, line: Optional[str], missing: bool) -> None:
    if status in (0, 1, 3):
        return
    message = line or f"gauntlet exited with status {status}"
    if status == 130:
        raise KeyboardInterrupt(message)
    if missing:
        raise FileNotFoundError(message)
    raise ValueError(message)


def _images_array(images: Any) -> np.ndarray:
    a = np.asarray(images)
    if a.ndim != 4:
        raise ValueError(f"images: expected a 4-D array (N,C,H,W float in [0,1] or N,H,W,C uint8), got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"images: dtype {a.dtype} (use float32 in [0, 1] or uint8 in [0, 255])")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError("images: the array holds NaN or infinite values")
    return a


def _labels_array(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels: expected {n} class indices (one per image), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels: dtype {y.dtype} (use integer class indices)")
    if (y < 0).any():
        raise ValueError("labels: negative class index")
    return y.astype(np.int64)


def evaluate(
    model: Union[PathLike, bytes],
    images: Any = None,
    labels: Any = None,
    attacks: Optional[Iterable[str]] = None,
    norm: str = "linf",
    eps: Optional[Iterable[float]] = None,
    preset: Optional[str] = None,
    seed: int = 0,
    batch_size: int = 256,
    threads: Optional[int] = None,
    device: str = "cpu",
    checks: bool = True,
    progress: bool = False,
    limit: Optional[int] = None,
    save_adversarial: Optional[int] = None,
    certify: Optional[Iterable[str]] = None,
    extra_args: Sequence[str] = (),
) -> Report:
    """Evaluates ``model`` on ``images``/``labels`` and returns the :class:`Report`.

    model: an ONNX file or model spec (.toml) path, ONNX bytes, or ``"builtin:mnist-cnn"``.
    images: (N, C, H, W) floats in [0, 1] or (N, H, W, C) uint8; labels: N class indices. With
    both omitted, the shipped MNIST sample (only with the shipped model).
    attacks: attack specs as on the command line (``"pgd:steps=40,step=0.01"``); default FGSM and
    PGD, or the ``preset`` ("quick" or "standard"). eps: budgets in pixel units (default per norm).
    certify: certified bounds beside the attacks (``["ibp", "crown"]``): the proven lower bound on
    robust accuracy, read with :meth:`Report.certified_accuracy`.
    extra_args: any further command-line flags (``["--mean", "0.5", "--std", "0.5"]``).
    threads: the worker threads, fixed by the first evaluation in a process (default: every core).
    progress: a progress bar on stderr (for terminals; leave it off in notebooks).
    """
    if (images is None) != (labels is None):
        raise ValueError("give both images and labels, or neither (the shipped data)")
    if images is not None:
        x = _images_array(images)
        y = _labels_array(labels, x.shape[0])
    work = tempfile.mkdtemp(prefix="gauntlet-")
    args = ["run"]
    if isinstance(model, (bytes, bytearray)):
        path = os.path.join(work, "model.onnx")
        with open(path, "wb") as f:
            f.write(model)
        args += ["--model", path]
    else:
        args += ["--model", os.fspath(model)]
    if images is not None:
        data = os.path.join(work, "data.npz")
        np.savez(data, images=x, labels=y)
        args += ["--dataset", data]
    if preset is not None:
        args += ["--preset", preset]
    for a in attacks or ():
        args += ["--attack", a]
    args += ["--norm", norm, "--seed", str(int(seed)), "--batch-size", str(int(batch_size)), "--device", device]
    if eps is not None:
        args.append("--eps=" + ",".join(repr(float(e)) for e in eps))
    if threads is not None:
        args += ["--threads", str(int(threads))]
    if not checks:
        args.append("--no-checks")
    if not progress:
        args.append("--quiet")
    if limit is not None:
        args += ["--limit", str(int(limit))]
    if save_adversarial is not None:
        args += ["--save-adversarial", str(int(save_adversarial))]
    if certify:
        args += ["--certify", ",".join(certify)]
    report_dir = os.path.join(work, "report")
    args += ["--report-dir", report_dir]
    args += list(extra_args)
    try:
        status, line, missing = _call(args, silent=True)
        if line and images is not None:
            line = line.replace(os.path.join(work, "data.npz"), "images")
        _raise(status, line, missing)
        report = Report._load(report_dir, os.path.join(report_dir, "report.json"))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for name in ("data.npz", "model.onnx"):
        if os.path.exists(os.path.join(work, name)):
            os.remove(os.path.join(work, name))
    # The report folder lives as long as the Report (for save() and adversarial_examples()).
    weakref.finalize(report, shutil.rmtree, work, True)
    return report
