"""The result of an evaluation: the JSON report of the command line, with accessors."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import _native


@dataclass(frozen=True)
class GateOutcome:
    """A release gate's verdict: ``passed``, and one entry per rule (``rules``) as in the JSON
    report's ``gate`` object."""

    passed: bool
    rules: List[Dict[str, Any]]
    raw: Dict[str, Any]

    def __bool__(self) -> bool:
        return self.passed


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    raise ValueError(f"gate rule value {v!r}: use a string, number or boolean")


def _rules_toml(rules: Any) -> str:
    out = []
    for rule in rules:
        if not isinstance(rule, dict):
            raise ValueError(f"gate rule {rule!r}: give each rule as a dict")
        out.append("[[rule]]")
        out += [f"{k} = {_toml_value(v)}" for k, v in rule.items()]
        out.append("")
    return "\n".join(out)


class Report:
    """An evaluation's report. ``to_dict()`` is the command line's JSON report, field for field."""

    def __init__(self, data: Dict[str, Any], report_dir: Optional[str] = None, json_path: Optional[str] = None):
        self._data = data
        self._dir = report_dir
        self._json = json_path

    @classmethod
    def _load(cls, report_dir: str, json_path: str) -> "Report":
        with open(json_path, encoding="utf-8") as f:
            return cls(json.load(f), report_dir, json_path)

    @classmethod
    def read(cls, path: Union[str, "os.PathLike[str]"]) -> "Report":
        """Reads a report.json written by ``gauntlet run`` (or a report folder holding one)."""
        p = os.fspath(path)
        if os.path.isdir(p):
            return cls._load(p, os.path.join(p, "report.json"))
        with open(p, encoding="utf-8") as f:
            return cls(json.load(f), None, p)

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(json.dumps(self._data))

    @property
    def clean_accuracy(self) -> float:
        return float(self._data["clean_accuracy"])

    @property
    def eps(self) -> List[float]:
        return [float(e) for e in self._data["eps"]]

    @property
    def attacks(self) -> List[str]:
        seen: List[str] = []
        for r in self._data["results"]:
            if r["attack"] not in seen:
                seen.append(r["attack"])
        return seen

    def robust_accuracy(self, attack: str, eps: float) -> float:
        """Robust accuracy of ``attack`` at budget ``eps`` (matched to within 1e-9)."""
        for r in self._data["results"]:
            if r["attack"] == attack and abs(float(r["eps"]) - float(eps)) <= 1e-9 * max(1.0, abs(float(eps))):
                return float(r["robust_accuracy"])
        raise KeyError(f"no result for attack {attack!r} at eps {eps}; attacks {self.attacks}, eps {self.eps}")

    def certified_accuracy(self, eps: float, method: str = "best") -> float:
        """The proven lower bound on robust accuracy at ``eps`` (``evaluate(certify=...)``), of
        ``method`` ("ibp", "crown") or of the tightest ("best")."""
        rows = [
            r
            for r in self._data.get("certified", [])
            if abs(float(r["eps"]) - float(eps)) <= 1e-9 * max(1.0, abs(float(eps)))
            and method in ("best", r["method"])
        ]
        if not rows:
            raise KeyError(f"no certified result for {method!r} at eps {eps}; evaluate with certify=[...]")
        return max(float(r["certified_accuracy"]) for r in rows)

    @property
    def worst_case(self) -> Dict[float, float]:
        """Robust accuracy against every attack together, per ε."""
        return {float(w["eps"]): float(w["robust_accuracy"]) for w in self._data["worst_case"]}

    @property
    def checks(self) -> List[Dict[str, Any]]:
        """The integrity checks: name, status (pass/warn/fail/skip) and detail."""
        return list(self._data.get("checks", []))

    def to_pandas(self):
        """One row per (attack, ε) result; needs pandas."""
        import pandas as pd  # optional dependency

        return pd.DataFrame(self._data["results"])

    def save(self, report_dir: Union[str, "os.PathLike[str]"]) -> None:
        """Writes every file the command line writes with --report-dir into ``report_dir``
        (which must not exist yet)."""
        if self._dir is None:
            raise ValueError("this report was read from a file; its report folder is not at hand")
        shutil.copytree(self._dir, os.fspath(report_dir))

    def gate(
        self,
        gate: Union[str, "os.PathLike[str]", List[Dict[str, Any]]],
        baseline: Optional[Union[str, "os.PathLike[str]", "Report"]] = None,
    ) -> GateOutcome:
        """Judges the report by a release gate (docs/GATE.md): a gate file's path, the TOML text
        of one, or a list of rules as dicts (``[{"metric": "robust_accuracy", "attack": "pgd",
        "eps": 0.3, "min": 0.8}]``); optionally against a baseline report (a path or a Report)."""
        if self._json is None:
            raise ValueError("the report has no file to judge")
        if isinstance(gate, (list, tuple)) or (isinstance(gate, str) and "[[rule]]" in gate):
            text = gate if isinstance(gate, str) else _rules_toml(gate)
            fd, path = tempfile.mkstemp(prefix="gauntlet-gate-", suffix=".toml")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                return self.gate(path, baseline)
            finally:
                os.remove(path)
        base = None
        if isinstance(baseline, Report):
            base = baseline._json
        elif baseline is not None:
            base = os.fspath(baseline)
            if os.path.isdir(base):
                base = os.path.join(base, "report.json")
        raw = json.loads(_native.judge(self._json, os.fspath(gate), base))
        return GateOutcome(passed=bool(raw["passed"]), rules=list(raw["rules"]), raw=raw)

    def adversarial_examples(self, attack: str, eps: Optional[float] = None) -> Dict[str, np.ndarray]:
        """The adversarial examples kept for ``attack`` (run with ``save_adversarial=K``), those
        first found at budget ``eps`` when given: arrays ``x_adv`` and ``x_clean`` (K, C, H, W),
        ``index`` (dataset positions), ``label``, ``clean_pred``, ``adv_pred``, ``eps`` (the
        smallest ε that broke the sample), ``linf`` and ``l2``, as in the report folder's
        ``adversarial/adversarial.npz``."""
        if self._dir is None:
            raise ValueError("this report was read from a file; its report folder is not at hand")
        folder = os.path.join(self._dir, "adversarial")
        npz = os.path.join(folder, "adversarial.npz")
        if not os.path.exists(npz):
            raise ValueError("no adversarial examples were kept: evaluate with save_adversarial=K")
        with open(os.path.join(folder, "attacks.txt"), encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if attack not in names:
            raise KeyError(f"no adversarial examples of {attack!r}; kept: {names}")
        with np.load(npz) as z:
            keep = z["attack"] == names.index(attack)
            if eps is not None:
                keep &= np.abs(z["eps"] - float(eps)) <= 1e-9 * max(1.0, abs(float(eps)))
            return {k: z[k][keep] for k in z.files if k != "attack"}

    def __repr__(self) -> str:
        return f"Report(clean_accuracy={self.clean_accuracy:.4f}, attacks={self.attacks}, eps={self.eps})"
