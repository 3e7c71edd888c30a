"""Helpers for the check cells that end every chapter.

A check cell asserts a claim of the chapter numerically. :func:`check` raises
:class:`ClaimFailed` (an ``AssertionError``) with the measured values, so that a chapter that
stops reproducing its claim fails the build loudly, and records every result so the chapter
can display a summary table.

When the runner executes a chapter it sets ``NTKLIT_CHECKS_FILE`` in the kernel's environment;
every result is then also appended to that file as one JSON line, and :func:`summary` appends
the kernel's peak memory (host RSS and, on an accelerator, the device's peak bytes in use), so
that the runner's run and verification records list every check with its measured values and
the memory the chapter needed, without parsing the notebook's outputs.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "ClaimFailed",
    "CheckResult",
    "check",
    "results",
    "reset",
    "loglog_slope",
    "summary",
    "peak_memory",
    "cell_digest",
    "CHECKS_FILE_ENV",
]

#: Environment variable naming the JSON-lines file that receives every check (set by the runner).
CHECKS_FILE_ENV = "NTKLIT_CHECKS_FILE"


class ClaimFailed(AssertionError):
    """A chapter's claim did not hold in this run."""


@dataclass(frozen=True)
class CheckResult:
    claim: str
    passed: bool
    detail: str
    #: The paper's statement or number this check reproduces (``None`` for the book's own
    #: checks: controls, closed forms, numerical hygiene); the scorecard lists these.
    paper: str | None = None
    #: SHA-256 (hex, first 16 digits) of the source of the notebook cell that made the check
    #: (``None`` outside IPython), so the runner can link the check to its section.
    cell: str | None = None


_RESULTS: list[CheckResult] = []


def _emit(entry: dict) -> None:
    """Append one JSON line to ``$NTKLIT_CHECKS_FILE`` (nothing when it is unset)."""
    path = os.environ.get(CHECKS_FILE_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def peak_memory() -> dict[str, int | None]:
    """This process's peak host RSS and the accelerator's peak bytes in use.

    Returns:
      ``{"rss_bytes": int, "device_bytes": int | None}``; ``device_bytes`` is the largest
      ``peak_bytes_in_use`` over JAX's devices, ``None`` on a CPU (or without JAX loaded).
    """
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    device = None
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            stats = [d.memory_stats() or {} for d in jax.devices() if d.platform != "cpu"]
            peaks = [s["peak_bytes_in_use"] for s in stats if "peak_bytes_in_use" in s]
            device = max(peaks) if peaks else None
        except Exception:  # pragma: no cover - backend without memory statistics
            device = None
    return {"rss_bytes": int(rss), "device_bytes": device}


def cell_digest(source: str) -> str:
    """The digest :class:`CheckResult` ``cell`` holds for a cell with this source."""
    import hashlib

    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _current_cell() -> str | None:
    """Digest of the running cell's source: IPython's raw input history ends with the cell
    being executed (its execution counters are not stable across ipykernel versions)."""
    ip = sys.modules.get("IPython")
    shell = ip.get_ipython() if ip is not None and hasattr(ip, "get_ipython") else None
    hist = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    return cell_digest(hist[-1]) if hist else None


def check(claim: str, passed: bool, detail: str = "", *, paper: str | None = None) -> CheckResult:
    """Record a claim and raise :class:`ClaimFailed` if it does not hold.

    Args:
      claim: the claim in words, e.g. ``"NTK error slope in [-0.6, -0.4]"``.
      passed: whether it holds in this run.
      detail: the measured values, shown in the table and in the error.
      paper: where the check reproduces a paper's claim, that claim: the source and its
        statement or number (e.g. ``"Huang et al. 2021, Thm 1: the orthogonal NTK equals the
        Gaussian one at infinite width"``). The book's scorecard lists every such check.

    Raises:
      ClaimFailed: if ``passed`` is false.
      ValueError: ``paper`` is given but empty.
    """
    if paper is not None and not (isinstance(paper, str) and paper.strip()):
        raise ValueError(f"paper must be a non-empty statement or None, got {paper!r}")
    res = CheckResult(claim, bool(passed), str(detail), paper, _current_cell())
    _RESULTS.append(res)
    _emit({"kind": "check", **asdict(res)})
    if not res.passed:
        raise ClaimFailed(f"claim failed: {claim} ({detail})")
    return res


def results() -> list[CheckResult]:
    """All results recorded since the last :func:`reset`."""
    return list(_RESULTS)


def reset() -> None:
    """Forget recorded results."""
    _RESULTS.clear()


def summary() -> str:
    """A Markdown table of the recorded checks (for ``IPython.display.Markdown``).

    Under the runner it also records the chapter's peak memory (:func:`peak_memory`).
    """
    _emit({"kind": "memory", **peak_memory()})
    rows = ["| claim | measured | result |", "|---|---|---|"]
    for r in _RESULTS:
        rows.append(f"| {r.claim} | {r.detail} | {'pass' if r.passed else 'FAIL'} |")
    return "\n".join(rows)


def loglog_slope(x, y) -> tuple[float, float]:
    """Least-squares slope of ``log y`` against ``log x`` and its standard error.

    Args:
      x, y: positive arrays of equal length >= 3.

    Returns:
      ``(slope, stderr)``.

    Raises:
      ValueError: for mismatched lengths, fewer than 3 points or non-positive values.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"need at least 3 points to fit a slope, got {x.size}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for a log-log fit")
    lx, ly = np.log(x), np.log(y)
    A = np.stack([lx, np.ones_like(lx)], axis=1)
    coef, res, *_ = np.linalg.lstsq(A, ly, rcond=None)
    resid = ly - A @ coef
    dof = max(x.size - 2, 1)
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(A.T @ A)
    return float(coef[0]), float(np.sqrt(cov[0, 0]))
