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

__all__ = [
    "INIT_COLORS",
    "INIT_MARKERS",
    "INIT_LABELS",
    "style",
    "figure",
    "reference_slope",
    "use_book_style",
    "series_loglog",
    "speedup_bars",
    "benchmark_figures",
]

#: One colour per initialization, used by every figure of the book.
INIT_COLORS: dict[str, str] = {
    "gaussian": "#1f77b4",
    "orthogonal": "#d62728",
    "infinite": "#2ca02c",
    "reference": "#7f7f7f",
}
INIT_MARKERS: dict[str, str] = {
    "gaussian": "o",
    "orthogonal": "s",
    "infinite": "^",
    "reference": "",
}
INIT_LABELS: dict[str, str] = {
    "gaussian": "Gaussian",
    "orthogonal": "orthogonal",
    "infinite": "infinite width",
    "reference": "reference",
}

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


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 6.0, height: float = 4.0, **kwargs):
    """A new figure in the book style; returns ``(fig, axes)`` like ``plt.subplots``.

    Args:
      ncols, nrows: grid of axes.
      width, height: size of one panel in inches.
      **kwargs: passed to ``plt.subplots`` (e.g. ``sharey=True``).
    """
    use_book_style()
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), constrained_layout=True, **kwargs
    )
    return fig, axes


def reference_slope(
    ax,
    x: Sequence[float],
    y: Sequence[float],
    slope: float,
    *,
    label: str | None = None,
    anchor: str = "first",
    **kwargs,
):
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
    kw = {
        "color": INIT_COLORS["reference"],
        "linestyle": "--",
        "linewidth": 1.0,
        "label": label if label is not None else rf"$\propto x^{{{slope:g}}}$",
    }
    kw.update(kwargs)
    return ax.plot(x, c * x**slope, **kw)


# ------------------------------------------------------------------------------------------
# Benchmark results (the performance page)
# ------------------------------------------------------------------------------------------

_SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def _label(values) -> str:
    return ", ".join(str(v) for v in values if v is not None)


def series_loglog(
    ax,
    rows: Sequence[dict],
    x: str,
    y: str,
    series: Sequence[str],
    *,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> int:
    """One log-log line per value of ``series`` through the records ``rows``.

    Args:
      ax: matplotlib axes.
      rows: flat records (dicts); a record without a positive ``x`` and ``y``, or whose
        ``status`` is present and not ``"ok"``, is left out.
      x, y: the keys plotted.
      series: the keys whose values name a line (e.g. ``("method", "m")``).
      xlabel, ylabel: axis labels (default: the keys).

    Returns:
      The number of lines drawn.
    """
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        xv, yv = r.get(x), r.get(y)
        if (
            r.get("status", "ok") != "ok"
            or not isinstance(xv, (int, float))
            or not isinstance(yv, (int, float))
            or xv <= 0
            or yv <= 0
        ):
            continue
        groups.setdefault(tuple(r.get(k) for k in series), []).append((float(xv), float(yv)))
    for i, (key, pts) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        pts.sort()
        ax.loglog(
            [a for a, _ in pts],
            [b for _, b in pts],
            marker=_SERIES_MARKERS[i % 10],
            label=_label(key) or y,
        )
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if groups:
        ax.legend(fontsize=8)
    return len(groups)


def speedup_bars(
    ax, labels: Sequence[str], groups: dict[str, Sequence[float]], *, ylabel: str = "speed-up (x)"
) -> None:
    """Grouped bars of speed-ups (log scale), one group per label, with a line at 1x.

    Args:
      ax: matplotlib axes.
      labels: one label per group (the configurations).
      groups: bar series name -> one value per label (``nan`` where it was not measured).
      ylabel: the axis label.
    """
    n = max(len(groups), 1)
    width = 0.8 / n
    pos = np.arange(len(labels))
    for i, (name, vals) in enumerate(groups.items()):
        ax.bar(pos + (i - (n - 1) / 2) * width, np.asarray(vals, dtype=float), width, label=name)
    ax.set_yscale("log")
    ax.axhline(1.0, color=INIT_COLORS["reference"], linestyle="--", linewidth=1.0)
    ax.set_xticks(pos, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    if groups:
        ax.legend(fontsize=8)


def _config(r: dict, keys: Sequence[str]) -> str:
    short = {"depth": "d", "width": "w", "inputs": "n", "N": "N", "m": "m"}
    return " ".join(f"{short.get(k, k)}={r[k]}" for k in keys if r.get(k) is not None)


def _ratio_bars(ax, rows, ratio: str, config: Sequence[str], series: str, skip: str):
    """Bars of ``ratio`` (time over the time of ``skip``), one group per configuration."""
    labels: list[str] = []
    vals: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get(ratio) is None or r.get("status", "ok") != "ok":
            continue
        lab = _config(r, config)
        if lab not in labels:
            labels.append(lab)
        vals.setdefault(str(r[series]), {})[lab] = float(r[ratio])
    speedup_bars(
        ax,
        labels,
        {k: [v.get(lab, np.nan) for lab in labels] for k, v in vals.items()},
        ylabel=f"time / time of {skip} (x)",
    )


def _empirical_figures(data: dict) -> list:
    rows = [r for r in data.get("results", []) if isinstance(r, dict)]
    single = [
        r
        for r in rows
        if r.get("ratio_to_ntklit_fcn") is not None or r.get("est_gflop") is not None
    ]
    ens = [r for r in rows if r.get("ratio_to_ensemble") is not None]
    out = []
    if single:
        fig, ax = figure(width=6.5, height=4.2)
        series_loglog(
            ax,
            single,
            "est_gflop",
            "run_s",
            ("kind", "method"),
            xlabel="estimated work (GFLOP)",
            ylabel="run time (s)",
        )
        ax.set_title("One network's empirical NTK: time vs work, every implementation")
        out.append(
            (
                "Empirical NTK of one network: run time against the estimated work, one "
                "line per implementation (FCN and CNN configurations).",
                fig,
            )
        )
    if ens:
        fig, ax = figure(width=7.5, height=4.2)
        _ratio_bars(
            ax,
            [
                dict(r, method=f"{r['method']} ({r.get('init')})")
                for r in ens
                if r.get("method") != "ensemble"
            ],
            "ratio_to_ensemble",
            ("depth", "width", "inputs"),
            "method",
            skip="ensemble",
        )
        ax.set_ylabel("loop time / ensemble time (x)")
        ax.set_title("Ensembles of networks vs Python loops")
        out.append(
            (
                "Speed-up of `ntklit.empirical.ensemble` over each loop of per-network "
                "calls (bars above 1 mean the ensemble is faster), per configuration.",
                fig,
            )
        )
    return out


def _features_figures(data: dict) -> list:
    rows = [r for r in data.get("results", []) if isinstance(r, dict)]
    if not rows:
        return []
    fig, axes = figure(ncols=2, width=4.6, height=4.0)
    series_loglog(
        axes[0],
        rows,
        "N",
        "wall_s",
        ("method", "m"),
        xlabel="training set size N",
        ylabel="wall time (s)",
    )
    axes[0].set_title("Time vs N: exact NTK vs feature maps")
    series_loglog(
        axes[1],
        rows,
        "N",
        "test_accuracy",
        ("method", "m"),
        xlabel="training set size N",
        ylabel="test accuracy",
    )
    axes[1].set_yscale("linear")
    axes[1].set_title("Accuracy vs N")
    cross = {
        k: v
        for k, v in (data.get("summary") or {}).items()
        if isinstance(k, str) and k.startswith("crossover")
    }
    note = "; ".join(f"{k}: {v}" for k, v in cross.items())
    return [
        (
            "Exact NTK regression against the feature maps: where a feature map's line falls "
            "below the exact one, the features are faster (the crossover)"
            + (f"; {note}." if note else "."),
            fig,
        )
    ]


def _kernels_figures(data: dict) -> list:
    rows = [r for r in data.get("results", []) if isinstance(r, dict)]
    if not rows:
        return []
    fig, ax = figure(width=6.0, height=4.0)
    series_loglog(
        ax,
        rows,
        "N",
        "wall_s",
        ("architecture", "depth"),
        xlabel="inputs N (an N x N kernel)",
        ylabel="wall time (s)",
    )
    reference_slope(
        ax,
        [r["N"] for r in rows if r.get("architecture") == "fcn"] or [1],
        [r["wall_s"] for r in rows if r.get("architecture") == "fcn"] or [1],
        2.0,
        label=r"$\propto N^2$",
    )
    ax.legend(fontsize=8)
    ax.set_title("Analytic kernels: time vs N")
    return [
        (
            "Analytic NNGP/NTK kernels with neural-tangents: time against the number of "
            "inputs, with the N^2 of the kernel's size for reference.",
            fig,
        )
    ]


def _train_figures(data: dict) -> list:
    res = data.get("results")
    if not isinstance(res, dict) or not res:
        return []
    labels = list(res)
    modes = [m for m in next(iter(res.values())).get("modes", {}) if m != "vmapped"]
    groups = {
        f"vmapped vs {m}": [
            res[k]["modes"][m]["wall_s"] / res[k]["modes"]["vmapped"]["wall_s"]
            if m in res[k].get("modes", {})
            else np.nan
            for k in labels
        ]
        for m in modes
    }
    fig, ax = figure(width=6.5, height=4.0)
    speedup_bars(ax, labels, groups, ylabel="loop time / vmapped time (x)")
    ax.set_title("Training a grid of runs: vmapped vs loops")
    return [
        (
            "Speed-up of `ntklit.train`'s vmapped grid over loops of runs, per network size "
            "(bars above 1 mean the vmapped grid is faster).",
            fig,
        )
    ]


_BENCHMARK_FIGURES = {
    "empirical": _empirical_figures,
    "features": _features_figures,
    "kernels": _kernels_figures,
    "train": _train_figures,
}


def benchmark_figures(name: str, data: dict) -> list:
    """The figures of one benchmark results file (``benchmarks/results/<name>.json``).

    Args:
      name: the file's stem; its first word (``empirical``, ``features``, ``kernels``,
        ``train``, as written by ``benchmarks/bench_<word>.py``) picks the figures.
      data: the file's JSON object.

    Returns:
      ``[(caption, figure), ...]``: time against size with every implementation on one
      log-log plot, speed-up bars, and for the feature maps the crossover with the exact
      kernel; ``[]`` for a results file of another kind.
    """
    make = _BENCHMARK_FIGURES.get(name.split("_")[0])
    return make(data) if make else []
