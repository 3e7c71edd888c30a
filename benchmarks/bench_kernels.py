"""Throughput of neural-tangents' analytic ``kernel_fn`` (NNGP + NTK) for FCNs and CNNs.

One command::

    .venv/bin/python benchmarks/bench_kernels.py            # modest default (~2 min on CPU)
    .venv/bin/python benchmarks/bench_kernels.py --full     # N up to 10,000 (FCN), 1,000 (CNN)

writes ``benchmarks/results/kernels_<device>.json`` (``cpu`` or ``gpu``) with the configuration,
date, device, JAX version and, per run: kernel entries per second, wall and process CPU time,
peak memory, and the bound that limits the run with the fraction of it achieved.

The bounds are measured in the same run, not quoted from a spec sheet:

* **FCN (memory traffic).** After the input Gram matrix (a matmul with ``2 d`` FLOPs per
  entry) every layer is elementwise work on ``N x N`` arrays (Dense: ``nngp, ntk`` read and
  written; ReLU/erf: the same plus ``cov1 cov2`` outer products and temporaries). We count
  ``BYTES_PER_ENTRY_LAYER`` bytes of memory traffic per entry and layer (a lower bound: 12
  array passes of 4 bytes) and compare with the bandwidth of a large array copy
  (``jnp.copy`` of a 256 MiB array; read + write counted).
* **CNN (FLOPs).** For each pair of images the pixel-pair covariance has ``(HW)^2`` entries and
  each Conv layer applies the patch average (``2 |F|`` FLOPs per entry and layer, ``|F| = 9``)
  plus the elementwise dual (counted as ``DUAL_FLOPS`` FLOPs), and the readout averages. We
  compare with the FLOP rate of a large float32 matmul measured in the same run. The run also
  reports the memory-traffic bound of the CNN (``BYTES_PER_ENTRY_LAYER`` per pixel-pair entry
  and layer): on CPU neural-tangents' CNN kernel is far below the FLOP bound and closer to
  the memory-traffic one, i.e. the FLOP bound is not what limits it there.

``--full`` (N = 10,000 FCN inputs, 1,000 CNN images) is meant for a GPU: on the 2-core CPU the
CNN part alone would take hours.

Float32 throughout (JAX's default). Timings exclude compilation (each configuration is run
once on a small input with the same batch shape first).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import ntklit  # noqa: E402,F401  (applies compat)
from ntklit import nets  # noqa: E402

import neural_tangents as nt  # noqa: E402

#: Memory traffic model of one FCN layer (Dense + activation), bytes per kernel entry (float32).
BYTES_PER_ENTRY_LAYER = 12 * 4
#: FLOPs counted per pixel-pair entry for one elementwise dual activation (ReLU/erf).
DUAL_FLOPS = 20


def _peak_memory_bytes() -> int:
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        return int(stats.get("peak_bytes_in_use", -1))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def measure_bandwidth(nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Achievable memory bandwidth (bytes/s) of a large device array copy, read + write."""
    a = jnp.ones((nbytes // 4,), jnp.float32)
    f = jax.jit(lambda x: x * 1.0000001)  # a copy the compiler cannot elide
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best


def measure_flops(n: int = 2048, repeats: int = 5) -> float:
    """Achievable float32 FLOP rate (FLOP/s) of an ``n x n`` matmul."""
    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), jnp.float32)
    b = jax.random.normal(k2, (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _time_kernel(kernel_fn, x, batch_size):
    kfn = nt.batch(kernel_fn, batch_size=batch_size, store_on_device=False)
    # compile on an input with the same batch shapes
    warm = x[: 2 * batch_size]
    jax.block_until_ready(kfn(warm, None, ("nngp", "ntk")))
    t, c = time.perf_counter(), time.process_time()
    k = kfn(x, None, ("nngp", "ntk"))
    jax.block_until_ready(k)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    ok = bool(np.all(np.isfinite(np.asarray(k.ntk[:4, :4]))))
    return wall, cpu, ok


def bench_fcn(N: int, depth: int, d: int, batch_size: int, bandwidth: float) -> dict:
    x = np.random.default_rng(0).standard_normal((N, d)).astype(np.float32)
    _, _, kernel_fn = nets.fcn(depth, 1, activation="relu", W_std=1.4, b_std=0.1)
    wall, cpu, ok = _time_kernel(kernel_fn, x, batch_size)
    entries = N * N
    rate = entries / wall
    bound = bandwidth / (BYTES_PER_ENTRY_LAYER * depth)
    return {
        "architecture": "fcn",
        "N": N,
        "depth": depth,
        "input_dim": d,
        "batch_size": batch_size,
        "wall_s": wall,
        "process_cpu_s": cpu,
        "entries_per_s": rate,
        "peak_memory_bytes": _peak_memory_bytes(),
        "bound": "memory traffic",
        "bound_entries_per_s": bound,
        "fraction_of_bound": rate / bound,
        "finite": ok,
    }


def bench_cnn(
    N: int, depth: int, hw: int, batch_size: int, flop_rate: float, bandwidth: float
) -> dict:
    x = np.random.default_rng(0).standard_normal((N, hw, hw, 1)).astype(np.float32)
    _, _, kernel_fn = nets.cnn(depth, 1, activation="relu", W_std=1.4, b_std=0.1)
    wall, cpu, ok = _time_kernel(kernel_fn, x, batch_size)
    entries = N * N
    rate = entries / wall
    flops_per_entry = depth * (hw * hw) ** 2 * (2 * 9 + DUAL_FLOPS)
    bound = flop_rate / flops_per_entry
    mem_bound = bandwidth / (depth * (hw * hw) ** 2 * BYTES_PER_ENTRY_LAYER)
    return {
        "architecture": "cnn",
        "N": N,
        "depth": depth,
        "image": [hw, hw, 1],
        "batch_size": batch_size,
        "wall_s": wall,
        "process_cpu_s": cpu,
        "entries_per_s": rate,
        "peak_memory_bytes": _peak_memory_bytes(),
        "bound": "FLOPs",
        "flops_per_entry": flops_per_entry,
        "bound_entries_per_s": bound,
        "fraction_of_bound": rate / bound,
        "memory_traffic_bound_entries_per_s": mem_bound,
        "fraction_of_memory_traffic_bound": rate / mem_bound,
        "finite": ok,
    }


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--full",
        action="store_true",
        help="FCN N up to 10,000 and CNN N up to 1,000 (minutes on CPU)",
    )
    p.add_argument("--out", type=Path, default=None, help="output JSON path")
    args = p.parse_args(argv)
    dev = jax.devices()[0]
    device = "cpu" if dev.platform == "cpu" else "gpu"
    if args.full:
        fcn_cfg = [(2000, 3), (5000, 3), (10000, 3)]
        cnn_cfg = [(200, 3, 8), (1000, 3, 8)]
    else:
        fcn_cfg = [(1000, 3), (3000, 3)]
        cnn_cfg = [(20, 2, 8), (60, 2, 8)]
    fcn_bs, cnn_bs = (1000, 50) if args.full else (500, 10)
    t0 = time.perf_counter()
    bandwidth = measure_bandwidth()
    flop_rate = measure_flops()
    print(
        f"device {dev.device_kind}: copy bandwidth {bandwidth / 1e9:.1f} GB/s, "
        f"matmul {flop_rate / 1e9:.1f} GFLOP/s",
        flush=True,
    )
    results = []
    for N, depth in fcn_cfg:
        r = bench_fcn(N, depth, 64, fcn_bs, bandwidth)
        results.append(r)
        print(
            f"FCN N={N} depth={depth}: {r['entries_per_s']:.3g} entries/s "
            f"({100 * r['fraction_of_bound']:.1f}% of the memory-traffic bound), "
            f"{r['wall_s']:.1f} s wall, {r['process_cpu_s']:.1f} s CPU",
            flush=True,
        )
    for N, depth, hw in cnn_cfg:
        r = bench_cnn(N, depth, hw, cnn_bs, flop_rate, bandwidth)
        results.append(r)
        print(
            f"CNN N={N} depth={depth} {hw}x{hw}: {r['entries_per_s']:.3g} entries/s "
            f"({100 * r['fraction_of_bound']:.2f}% of the FLOP bound, "
            f"{100 * r['fraction_of_memory_traffic_bound']:.1f}% of the memory-traffic "
            f"bound), "
            f"{r['wall_s']:.1f} s wall, {r['process_cpu_s']:.1f} s CPU",
            flush=True,
        )
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    record = {
        "benchmark": "kernels",
        "config": {
            "full": args.full,
            "dtype": "float32",
            "activation": "relu",
            "fcn_batch_size": fcn_bs,
            "cnn_batch_size": cnn_bs,
            "bytes_per_entry_layer_model": BYTES_PER_ENTRY_LAYER,
            "cnn_dual_flops_model": DUAL_FLOPS,
        },
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {
            "platform": dev.platform,
            "kind": dev.device_kind,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        },
        "load_average": load,
        "jax_version": jax.__version__,
        "measured": {"copy_bandwidth_bytes_per_s": bandwidth, "matmul_flops_per_s": flop_rate},
        "results": results,
        "total_wall_s": time.perf_counter() - t0,
    }
    out = args.out or Path(__file__).resolve().parent / "results" / f"kernels_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
