"""Benchmark: training a grid of networks as one vmapped program vs Python loops over runs.

Three ways to train the same grid (learning rates x seeds) of the same networks on the same
minibatches, for several network sizes:

* ``vmapped``: :func:`ntklit.train.train` (``vectorize=True``), the library's vectorized path:
  every run of the grid in one compiled program.
* ``loop_compiled_run``: ``train(..., vectorize=False)``: a Python loop over grid points, each
  trained by one compiled training program (the whole run on device, a host call only every
  32 records), the program compiled once and reused for every run.
* ``loop_per_step``: what a researcher writes by hand: a ``jax.jit``-compiled SGD update called
  from a Python loop over steps and runs, plus a jitted evaluation at every record. It uses
  ``train``'s initialization and minibatch order, and its final losses are compared with the
  ``vmapped`` ones (``max_rel_diff_final_loss``), so all three train the same networks.

jax.random's per-shape samplers (shared by all modes) are compiled first, by one
initialization (``init_sampler_compile_wall_s``). Each mode is then called once to compile
its own programs (the warm-up, recorded as ``warmup_*``), then timed (best of ``repeats``).
Throughput is examples x parameters per second,

    runs * steps * examples_per_step * num_params / seconds,

with wall time (``throughput``) and with process CPU time, user + system
(``throughput_per_cpu_s``), which is less sensitive to other processes on a shared machine.
Speed-ups are ratios of these throughputs; ``first_call`` ratios include compilation.
The load average before and after is recorded.

Usage (one command; writes ``results/train_cpu.json``)::

    .venv/bin/python benchmarks/bench_train.py
    .venv/bin/python benchmarks/bench_train.py --out benchmarks/results/train_gpu.json  # GPU
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
import jax.numpy as jnp
import numpy as np
import optax

import ntklit
from ntklit import data, nets, train

#: (depth, width) of the benchmarked tanh FCNs: tiny (per-op overhead dominates), the two
#: sizes of the previous results, and the chapter-6 quick networks (depths 8, 24; width 32).
SIZES = [(1, 8), (2, 16), (2, 64), (8, 32), (24, 32)]


def measure(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def per_step_loop(init_fn, apply_fn, x, y, lrs, seeds, steps, batch_size, record_every):
    """Hand-written loop: jitted SGD step (softmax cross-entropy) per step, per run; the train
    loss and accuracy on the whole training set recorded every ``record_every`` steps.
    Initialization and minibatch order as in :func:`ntklit.train.train`. Returns the final
    train losses, ``(A, S)``."""
    n = x.shape[0]
    n_batches = n // batch_size
    input_shape = (-1,) + tuple(x.shape[1:])

    @jax.jit
    def update(params, xb, yb, lr):
        def loss_fn(p):
            return jnp.mean(optax.softmax_cross_entropy(apply_fn(p, xb), yb))

        g = jax.grad(loss_fn)(params)
        return jax.tree_util.tree_map(lambda p, u: p - lr * u, params, g)

    @jax.jit
    def evaluate(params):
        f = apply_fn(params, x)
        return (
            jnp.mean(optax.softmax_cross_entropy(f, y)),
            jnp.mean(jnp.argmax(f, -1) == jnp.argmax(y, -1)),
        )

    final = np.zeros((len(lrs), len(seeds)))
    for a, lr in enumerate(lrs):
        for s, seed in enumerate(seeds):
            key = jax.random.key(seed)
            params = init_fn(jax.random.fold_in(key, 0), input_shape)[1]
            kperm = jax.random.fold_in(key, 1)
            records = [evaluate(params)]
            perm = None
            for t in range(steps):
                if t % n_batches == 0:
                    perm = jax.random.permutation(jax.random.fold_in(kperm, t // n_batches), n)
                idx = perm[(t % n_batches) * batch_size : (t % n_batches + 1) * batch_size]
                params = update(params, x[idx], y[idx], lr)
                if (t + 1) % record_every == 0:
                    records.append(evaluate(params))
            final[a, s] = float(records[-1][0])
    return final


def bench_one(a, tr, depth, width, lrs, seeds, n_runs):
    """Time the three modes for one network; returns a results dict."""
    init_fn, apply_fn, _ = nets.fcn(
        depth, width, activation="tanh", W_std=1.2, b_std=0.1, out_dim=tr.num_classes
    )
    x, y = jnp.asarray(tr.x), jnp.asarray(tr.y)

    def lib(vectorize, steps):
        return train.train(
            init_fn,
            apply_fn,
            x,
            y,
            learning_rates=lrs,
            seeds=seeds,
            steps=steps,
            loss="xent",
            batch_size=a.batch_size,
            record_every=a.record_every,
            vectorize=vectorize,
        )

    modes = {
        "vmapped": lambda steps: lib(True, steps),
        "loop_compiled_run": lambda steps: lib(False, steps),
        "loop_per_step": lambda steps: per_step_loop(
            init_fn, apply_fn, x, y, lrs, seeds, steps, a.batch_size, a.record_every
        ),
    }
    # jax.random's samplers are compiled per shape once per process and shared by all modes:
    # compile them first so that each mode's warm-up is its own compilation only
    _, s_wall, _ = measure(
        lambda: jax.block_until_ready(
            init_fn(jax.random.fold_in(jax.random.key(0), 0), (-1,) + tuple(x.shape[1:]))[1]
        )
    )
    results, finals = {}, {}
    num_params = None
    for mode, fn in modes.items():
        # warm-up: compiles the programs (train() caches them per apply_fn and configuration;
        # they do not depend on steps) and jax.random's per-shape samplers
        _, w_wall, w_cpu = measure(lambda: fn(a.record_every))
        best = None
        for _ in range(a.repeats):
            res, wall, cpu = measure(lambda: fn(a.steps))
            if best is None or cpu < best[2]:
                best = (res, wall, cpu)
        res, wall, cpu = best
        if isinstance(res, train.TrainResult):
            num_params = res.num_params
            finals[mode] = res.loss[..., -1]
        else:
            finals[mode] = res
        work = n_runs * a.steps * a.batch_size * num_params
        results[mode] = {
            "warmup_wall_s": round(w_wall, 3),
            "warmup_cpu_s": round(w_cpu, 3),
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "throughput": work / wall,
            "throughput_per_cpu_s": work / cpu,
        }
    ref = finals["vmapped"]
    out = {
        "depth": depth,
        "width": width,
        "num_params": int(num_params),
        "init_sampler_compile_wall_s": round(s_wall, 3),
    }
    out["max_rel_diff_final_loss"] = {
        m: float(np.max(np.abs(finals[m] - ref) / np.abs(ref))) for m in finals if m != "vmapped"
    }
    v = results["vmapped"]
    for m in ("loop_compiled_run", "loop_per_step"):
        r = results[m]
        out[f"speedup_vs_{m}"] = {
            "wall": v["throughput"] / r["throughput"],
            "cpu": v["throughput_per_cpu_s"] / r["throughput_per_cpu_s"],
            "first_call_wall": (r["warmup_wall_s"] + r["wall_s"])
            / (v["warmup_wall_s"] + v["wall_s"]),
        }
    out["modes"] = results
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sizes",
        default=",".join(f"{d}x{w}" for d, w in SIZES),
        help="comma-separated depth x width, e.g. 1x8,2x16",
    )
    p.add_argument("--n-lr", type=int, default=5)
    p.add_argument("--n-seeds", type=int, default=4)
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--record-every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_cpu.json"))
    a = p.parse_args(argv)
    if a.steps % a.record_every:
        raise ValueError("--steps must be a multiple of --record-every")
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    load_before = list(os.getloadavg())
    t_start = time.perf_counter()
    tr = data.load("digits", "train", size=a.n_train, seed=0)
    lrs = [float(v) for v in np.geomspace(0.05, 0.5, a.n_lr)]
    seeds = list(range(a.n_seeds))
    n_runs = len(lrs) * len(seeds)
    all_results = {}
    for depth, width in sizes:
        r = bench_one(a, tr, depth, width, lrs, seeds, n_runs)
        all_results[f"depth{depth}_width{width}"] = r
        print(
            f"depth {depth:3d} width {width:4d} ({r['num_params']} params): vmapped vs "
            f"compiled-run loop {r['speedup_vs_loop_compiled_run']['cpu']:.2f}x (CPU time), "
            f"{r['speedup_vs_loop_compiled_run']['wall']:.2f}x (wall); vs per-step loop "
            f"{r['speedup_vs_loop_per_step']['cpu']:.2f}x (CPU), "
            f"{r['speedup_vs_loop_per_step']['wall']:.2f}x (wall)",
            flush=True,
        )
    dev = jax.devices()[0]
    record = {
        "benchmark": "ntklit.train: vmapped grid vs Python loops over runs",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {
            "platform": dev.platform,
            "kind": dev.device_kind,
            "cpu_count": os.cpu_count(),
            "loadavg_1_5_15_before": load_before,
            "loadavg_1_5_15_after": list(os.getloadavg()),
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "optax": optax.__version__,
            "ntklit": ntklit.__version__,
        },
        "config": {
            "network": "FCN tanh, W_std 1.2, b_std 0.1, NTK parameterization",
            "sizes_depth_width": sizes,
            "dataset": "digits",
            "n_train": a.n_train,
            "batch_size": a.batch_size,
            "loss": "xent, SGD",
            "grid": {"learning_rates": lrs, "seeds": seeds},
            "runs": n_runs,
            "steps": a.steps,
            "record_every": a.record_every,
            "repeats": a.repeats,
            "command": "python benchmarks/bench_train.py",
            "throughput_unit": "examples x parameters per second (wall, or CPU time)",
            "timing": "best of repeats (by CPU time) after a warm-up call that "
            "compiles; first_call ratios include the warm-up",
        },
        "total_wall_s": round(time.perf_counter() - t_start, 1),
        "results": all_results,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
