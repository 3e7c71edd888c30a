"""Benchmark: training a grid of networks as one vmapped program vs a Python loop over runs.

Both modes call :func:`ntklit.train.train` on the same grid (learning rates x seeds) with the
same per-run program; ``vectorize=True`` trains all runs of a chunk together, ``vectorize=False``
trains them one after another (one compiled program, reused for every run). Each mode is first
called once to compile (``train`` caches its programs; the warm-up time is recorded), then
timed. Throughput is in examples x parameters per second,

    runs * steps * examples_per_step * num_params / seconds,

with wall time (``throughput``) and with process CPU time, user + system
(``throughput_per_cpu_s``), which is less sensitive to other processes on a shared machine.
The load average is recorded.

Usage::

    .venv/bin/python benchmarks/bench_train.py                 # CPU, writes results/train_cpu.json
    .venv/bin/python benchmarks/bench_train.py --out results/train_gpu.json   # on a GPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

import ntklit
from ntklit import data, nets, train


def measure(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench_one(a, tr, width, lrs, seeds, n_runs):
    """Time the vmapped grid and the loop for one network width; returns a results dict."""
    init_fn, apply_fn, _ = nets.fcn(a.depth, width, activation="tanh", W_std=1.2, b_std=0.1,
                                    out_dim=tr.num_classes)

    def run(vectorize, steps):
        return train.train(init_fn, apply_fn, tr.x, tr.y, learning_rates=lrs, seeds=seeds,
                           steps=steps, loss="xent", batch_size=a.batch_size,
                           record_every=a.record_every, vectorize=vectorize)

    results = {}
    ref = None
    for mode, vec in (("vmapped", True), ("loop", False)):
        # warm-up: compiles the programs, which train() caches per (apply_fn, configuration),
        # and jax.random's per-shape samplers; the timed call then measures training only
        _, w_wall, w_cpu = measure(lambda: run(vec, a.record_every))
        best = None
        for _ in range(a.repeats):
            res, wall, cpu = measure(lambda: run(vec, a.steps))
            if best is None or wall < best[1]:
                best = (res, wall, cpu)
        res, wall, cpu = best
        if ref is None:
            ref = res
        else:  # the two modes must train the same networks
            np.testing.assert_allclose(res.loss, ref.loss, rtol=2e-3, atol=1e-5)
        work = n_runs * a.steps * res.examples_per_step * res.num_params
        results[mode] = {"warmup_wall_s": round(w_wall, 3), "warmup_cpu_s": round(w_cpu, 3),
                         "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                         "throughput": work / wall, "throughput_per_cpu_s": work / cpu}
    results["speedup"] = results["vmapped"]["throughput"] / results["loop"]["throughput"]
    results["speedup_cpu_time"] = (results["vmapped"]["throughput_per_cpu_s"]
                                   / results["loop"]["throughput_per_cpu_s"])
    results["num_params"] = int(ref.num_params)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    p.add_argument("--n-lr", type=int, default=5)
    p.add_argument("--n-seeds", type=int, default=4)
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--record-every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_cpu.json"))
    a = p.parse_args(argv)
    if a.steps % a.record_every:
        raise ValueError("--steps must be a multiple of --record-every")

    tr = data.load("digits", "train", size=a.n_train, seed=0)
    lrs = list(np.geomspace(0.05, 0.5, a.n_lr))
    seeds = list(range(a.n_seeds))
    n_runs = len(lrs) * len(seeds)
    all_results = {}
    for width in a.widths:
        all_results[f"width_{width}"] = bench_one(a, tr, width, lrs, seeds, n_runs)
    dev = jax.devices()[0]
    record = {
        "benchmark": "ntklit.train: vmapped grid vs Python loop over runs",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {"platform": dev.platform, "kind": dev.device_kind,
                   "cpu_count": os.cpu_count(), "loadavg_1_5_15": list(os.getloadavg())},
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "numpy": np.__version__, "ntklit": ntklit.__version__},
        "config": {"network": f"FCN tanh depth {a.depth}, widths {a.widths}, NTK param.",
                   "dataset": "digits",
                   "n_train": a.n_train, "batch_size": a.batch_size, "loss": "xent",
                   "grid": {"learning_rates": [float(x) for x in lrs], "seeds": seeds},
                   "runs": n_runs, "steps": a.steps, "record_every": a.record_every,
                   "repeats": a.repeats,
                   "throughput_unit": "examples x parameters per second (wall, or CPU time)",
                   "timing": "after a warm-up call that compiles the cached programs"},
        "results": all_results,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(all_results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
