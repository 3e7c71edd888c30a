"""Benchmark: exact NTK kernel regression vs NTK feature maps, time and memory against N.

One command (CPU by default; on a GPU machine JAX uses the GPU for the kernel and features)::

    .venv/bin/python benchmarks/bench_features.py

For every training-set size N of MNIST-1D (generated deterministically by ``ntklit.data``) it
measures exact NTK ridge regression (neural-tangents ``kernel_fn`` of
``nets.fcn(depth, ..., activation="relu", W_std=sqrt(2), b_std=0)``, then one eigendecomposition
for all ridges; only up to ``--exact-max-n``) and ridge regression on each feature map of
``ntklit.features`` (features of train/val/test, then the m x m normal equations). Each entry
records test accuracy, the chosen ridge, wall time, CPU time (user + sys of this process, all
threads) and the peak resident memory above the start of the call (``features.measure``, the
one timing mechanism shared with chapter 8), after untimed warm-up calls that compile
everything (each feature map's batch program with ``FeatureMap.compile``; ``kernel_fn`` at
every N, since it compiles per input shape). For ``m > N`` the feature ridge solve runs in the
dual (``ridge_select``).
The NTK sketch runs twice, with its tensor powers built by the chain (method ``"sketch"``) and by
the paper's PolySketch tree (``"sketch_tree"``, ``powers="tree"``). The machine load
(``os.getloadavg``) is recorded with every entry, since on a shared machine wall times are
inflated.

Writes ``benchmarks/results/features_<device>.json`` with the configuration, date, device,
package versions and the results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 2000, 4000, 8000, 16000],
        help="training set sizes N",
    )
    p.add_argument("--exact-max-n", type=int, default=4000, help="largest N for exact regression")
    p.add_argument("--dims", type=int, nargs="+", default=[1024], help="feature dimensions m")
    p.add_argument("--depth", type=int, default=2, help="hidden ReLU layers")
    p.add_argument("--degree", type=int, default=8, help="polynomial degree of the NTK sketch")
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=str, default=None, help="output JSON (default: results/...)")
    args = p.parse_args(argv)
    if min(args.sizes) < 10 or min(args.dims) < 4 or args.depth < 1:
        p.error("sizes must be >= 10, dims >= 4 and depth >= 1")
    return args


def _ratio(a: float, b: float) -> float | None:
    """a / b rounded, or None where b was too short to measure (CPU time has 10 ms ticks)."""
    return round(a / b, 3) if b > 0 else None


def main(argv=None) -> dict:
    args = _parse(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    import ntklit  # noqa: F401
    from ntklit import data, nets
    from ntklit import features as F

    ridges = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    n_pool = max(args.sizes) + args.n_val + args.n_test
    pool = data.load("mnist1d", "train", size=n_pool, seed=args.seed, dtype="float32")
    perm = np.random.default_rng(args.seed).permutation(n_pool)
    i_test = perm[: args.n_test]
    i_val = perm[args.n_test : args.n_test + args.n_val]
    i_train = perm[args.n_test + args.n_val :]
    x_val, lab_val = pool.x[i_val], pool.labels[i_val]
    x_test, lab_test = pool.x[i_test], pool.labels[i_test]
    _, _, kernel_fn = nets.fcn(args.depth, 512, activation="relu", W_std=2**0.5, b_std=0.0)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")

    def exact(n):
        x_tr, y_tr = pool.x[i_train[:n]], pool.y[i_train[:n]]
        x_all = np.concatenate([x_tr, x_val, x_test]).astype(np.float64)
        # kernel_fn is jit-compiled per input shape: compile at this N, untimed
        kernel_fn(x_all, x_tr.astype(np.float64), "ntk").block_until_ready()

        def go():
            k = np.asarray(kernel_fn(x_all, x_tr.astype(np.float64), "ntk"))
            fit = F.kernel_ridge_select(k[:n], y_tr, k[n : n + len(x_val)], lab_val, ridges)
            acc = float(np.mean(np.argmax(fit.predict(k[n + len(x_val) :]), 1) == lab_test))
            return acc, fit.ridge

        return F.measure(go)

    # every feature method; the sketch also with the PolySketch tree
    variants = {k: (k, "chain") for k in F.METHODS} | {"sketch_tree": ("sketch", "tree")}

    def feats(variant, m, n):
        x_tr, y_tr = pool.x[i_train[:n]], pool.y[i_train[:n]]
        method, powers = variants[variant]
        fm = F.feature_map(
            jax.random.key(args.seed + 1),
            method,
            x_tr.shape[1],
            args.depth,
            m,
            degree=args.degree,
            powers=powers,
        )

        def go():
            phi = np.asarray(fm(np.concatenate([x_tr, x_val, x_test])), dtype=np.float64)
            fit = F.ridge_select(phi[:n], y_tr, phi[n : n + len(x_val)], lab_val, ridges)
            acc = float(np.mean(np.argmax(fit.predict(phi[n + len(x_val) :]), 1) == lab_test))
            return acc, fit.ridge

        return F.measure(go)

    # warm-up (compilation): kernel_fn compiles per N inside exact(); each feature map's batch
    # program for the row counts of the timed calls (FeatureMap.compile costs one batch)
    for variant, (method, powers) in variants.items():
        for m in args.dims:
            fm = F.feature_map(
                jax.random.key(args.seed + 1),
                method,
                pool.x.shape[1],
                args.depth,
                m,
                degree=args.degree,
                powers=powers,
            )
            for n in args.sizes:
                fm.compile(n + args.n_val + args.n_test)

    results = []

    def record(method, m, n, out):
        (acc, ridge), meas = out
        row = {
            "method": method,
            "m": m,
            "N": n,
            "test_accuracy": acc,
            "ridge": ridge,
            "wall_s": meas.wall_s,
            "cpu_s": meas.cpu_s,
            "peak_mem_mb": meas.peak_mem_mb,
            "load_avg_1min": os.getloadavg()[0],
        }
        results.append(row)
        print(json.dumps(row), flush=True)

    for n in args.sizes:
        if n <= args.exact_max_n:
            record("exact", None, n, exact(n))
        for variant in variants:
            for m in args.dims:
                record(variant, m, n, feats(variant, m, n))

    import psutil

    dev = jax.devices()[0]
    device = "gpu" if dev.platform == "gpu" else dev.platform
    ex = [r for r in results if r["method"] == "exact"]
    summary = {}
    if ex:
        n_both = max(r["N"] for r in ex)
        e = [r for r in ex if r["N"] == n_both][0]
        for method, m in ((k, m) for m in args.dims for k in variants):
            f = [r for r in results if r["method"] == method and r["N"] == n_both and r["m"] == m][
                0
            ]
            summary[f"{method} vs exact at N={n_both}, m={f['m']}"] = {
                "cpu_speedup": _ratio(e["cpu_s"], f["cpu_s"]),
                "wall_speedup": _ratio(e["wall_s"], f["wall_s"]),
                "memory_ratio": round(e["peak_mem_mb"] / max(f["peak_mem_mb"], 1.0), 3),
                "accuracy_gap_points": round(100 * (e["test_accuracy"] - f["test_accuracy"]), 2),
            }
        for m in args.dims:
            cross = [
                r["N"]
                for r in ex
                if all(
                    f["cpu_s"] < r["cpu_s"]
                    for f in results
                    if f["method"] != "exact" and f["N"] == r["N"] and f["m"] == m
                )
            ]
            summary[f"crossover N, m={m} (all methods use less CPU than exact)"] = (
                min(cross) if cross else "not reached"
            )
    for m in args.dims:  # the PolySketch tree's cost relative to the chain, same map size
        summary[f"sketch_tree / sketch CPU time, m={m}, by N"] = {
            str(r["N"]): _ratio(t["cpu_s"], r["cpu_s"])
            for r in results
            if r["method"] == "sketch" and r["m"] == m
            for t in results
            if t["method"] == "sketch_tree" and t["m"] == m and t["N"] == r["N"]
        }
    out = {
        "title": "NTK feature maps vs exact NTK regression (MNIST-1D, CPU time and memory vs N)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": (
            f"{dev.platform} {getattr(dev, 'device_kind', '')}, {os.cpu_count()} CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.machine()}"
        ),
        "command": "python benchmarks/bench_features.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "summary": summary,
        "versions": {
            p: metadata.version(p) for p in ("jax", "jaxlib", "neural-tangents", "numpy", "scipy")
        }
        | {"python": sys.version.split()[0], "ntklit": ntklit.__version__},
        "config": {k: v for k, v in vars(args).items() if k != "out"}
        | {
            "ridges": ridges,
            "dataset": "mnist1d",
            "kernel": "ReLU FCN NTK, W_std=sqrt(2), b_std=0",
        },
        "notes": "cpu_s is user+sys CPU time of the process over all threads; peak_mem_mb is "
        "the peak RSS above the start of the call (sampled every 5 ms); the machine "
        "may be shared (see load_avg_1min), which inflates wall_s.",
        "results": results,
    }
    path = (
        Path(args.out)
        if args.out
        else (Path(__file__).parent / "results" / f"features_{device}.json")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
