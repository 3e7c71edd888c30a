"""One figure style for the whole book.

Every chapter draws through these helpers so that each initialization has one colour and one
marker everywhere, axes are labelled, and log-log plots carry reference slopes.

Example::

    from ntklit import plotting
    fig, ax = plotting.figure()
    ax.loglog(widths, err_g, **plotting.style("gaussian"))
    plotting.reference_slope(ax, widths, err_g, -0.5, label=r"$\\propto n^{-1/2}$")
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["INIT_COLORS", "INIT_MARKERS", "INIT_LABELS", "style", "figure", "reference_slope",
           "use_book_style"]

#: One colour per initialization, used by every figure of the book.
INIT_COLORS: dict[str, str] = {"gaussian": "#1f77b4", "orthogonal": "#d62728",
                               "infinite": "#2ca02c", "reference": "#7f7f7f"}
INIT_MARKERS: dict[str, str] = {"gaussian": "o", "orthogonal": "s", "infinite": "^",
                                "reference": ""}
INIT_LABELS: dict[str, str] = {"gaussian": "Gaussian", "orthogonal": "orthogonal",
                               "infinite": "infinite width", "reference": "reference"}

_RC = {
    "figure.figsize": (6.0, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
}


def use_book_style() -> None:
    """Apply the book's matplotlib rc settings (idempotent)."""
    mpl.rcParams.update(_RC)


def style(init: str, **overrides) -> dict:
    """Keyword arguments for ``ax.plot`` & co. that identify an initialization.

    Args:
      init: ``"gaussian"``, ``"orthogonal"``, ``"infinite"`` or ``"reference"``.
      **overrides: any matplotlib keyword, replacing the defaults.

    Returns:
      A dict with ``color``, ``marker`` and ``label``.

    Raises:
      ValueError: for an unknown ``init``.
    """
    if init not in INIT_COLORS:
        raise ValueError(f"init must be one of {sorted(INIT_COLORS)}, got {init!r}")
    kw = {"color": INIT_COLORS[init], "marker": INIT_MARKERS[init], "label": INIT_LABELS[init]}
    kw.update(overrides)
    return kw


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 6.0, height: float = 4.0,
           **kwargs):
    """A new figure in the book style; returns ``(fig, axes)`` like ``plt.subplots``.

    Args:
      ncols, nrows: grid of axes.
      width, height: size of one panel in inches.
      **kwargs: passed to ``plt.subplots`` (e.g. ``sharey=True``).
    """
    use_book_style()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             constrained_layout=True, **kwargs)
    return fig, axes


def reference_slope(ax, x: Sequence[float], y: Sequence[float], slope: float, *,
                    label: str | None = None, anchor: str = "first", **kwargs):
    """Draw a dashed power-law reference ``y = c x^slope`` through one point of ``(x, y)``.

    Args:
      ax: matplotlib axes (log-log).
      x, y: data the line is anchored to.
      slope: the exponent.
      label: legend label, default ``x^slope``.
      anchor: ``"first"`` or ``"last"`` data point.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    i = 0 if anchor == "first" else -1
    c = y[i] / x[i] ** slope
    kw = {"color": INIT_COLORS["reference"], "linestyle": "--", "linewidth": 1.0,
          "label": label if label is not None else rf"$\propto x^{{{slope:g}}}$"}
    kw.update(kwargs)
    return ax.plot(x, c * x ** slope, **kw)
