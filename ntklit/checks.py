"""Helpers for the check cells that end every chapter.

A check cell asserts a claim of the chapter numerically. :func:`check` raises
:class:`ClaimFailed` (an ``AssertionError``) with the measured values, so that a chapter that
stops reproducing its claim fails the build loudly, and records every result so the chapter
can display a summary table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClaimFailed", "CheckResult", "check", "results", "reset", "loglog_slope",
           "summary"]


class ClaimFailed(AssertionError):
    """A chapter's claim did not hold in this run."""


@dataclass(frozen=True)
class CheckResult:
    claim: str
    passed: bool
    detail: str


_RESULTS: list[CheckResult] = []


def check(claim: str, passed: bool, detail: str = "") -> CheckResult:
    """Record a claim and raise :class:`ClaimFailed` if it does not hold.

    Args:
      claim: the claim in words, e.g. ``"NTK error slope in [-0.6, -0.4]"``.
      passed: whether it holds in this run.
      detail: the measured values, shown in the table and in the error.
    """
    res = CheckResult(claim, bool(passed), detail)
    _RESULTS.append(res)
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
    """A Markdown table of the recorded checks (for ``IPython.display.Markdown``)."""
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
