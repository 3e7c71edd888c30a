"""Benchmark of empirical-NTK implementations: neural-tangents' four against ntklit's paths.

Usage (one command; writes ``benchmarks/results/empirical_<device>.json``)::

    .venv/bin/python benchmarks/bench_empirical.py            # CPU-sized configurations
    .venv/bin/python benchmarks/bench_empirical.py --profile full   # issue-sized (one GPU)

Every (configuration, method) runs in its own subprocess, so that its peak memory (maximum
resident set size on CPU; ``peak_bytes_in_use`` of the device on GPU) is its own, and an
implementation that fails (e.g. neural-tangents' STRUCTURED_DERIVATIVES or AUTO on a JAX they
do not support) is recorded as an error instead of stopping the run. Each measurement reports
the compile time (first call), the median of ``--repeats`` timed calls, and the maximum relative
difference ``max|K - K_ref| / max|K_ref|`` to the reference kernel of that configuration
(ntklit's FCN fast path for FCNs, neural-tangents' Jacobian contraction for the CNN), all in
float32 on the same random network and inputs. Methods whose estimated cost exceeds
``--max-gflop`` are skipped and recorded as skipped, with the estimate.

The ensemble measurement times the kernels of 100 networks: ``ntklit.empirical``'s vmapped
ensemble (one compiled call, ``init_mode="vmap"``: parameters drawn and kernels computed inside
``vmap``) against Python loops over seeds, (a) calling the stax ``init_fn``
and a jitted kernel per seed, (b) calling one jitted ``init + kernel`` function per seed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NT_METHODS = ("jacobian_contraction", "ntk_vector_products", "structured_derivatives", "auto")

PROFILES = {
    # depth, width, inputs: CPU-sized (2 cores), plus the target configuration.
    "quick": {
        "fcn": [(5, 512, 128), (10, 1024, 256)],
        "cnn": [(2, 32, 32)],
        "ensemble": (2, 128, 32, 100),
    },
    # the ranges (depth 5-20, width 512-4096, 128-1024 inputs), for one GPU.
    "full": {
        "fcn": [(5, 512, 128), (10, 1024, 256), (20, 1024, 256), (5, 4096, 1024),
                (10, 2048, 512)],
        "cnn": [(3, 128, 64)],
        "ensemble": (3, 512, 64, 100),
    },
}


def _estimate_gflop(kind, depth, width, n, method):
    """Rough FLOP estimates (arXiv:2206.08720, Table 1) used only to skip hopeless runs."""
    if kind == "cnn":
        p = depth * 9 * width ** 2 + 9 * width
        fwd = 64 * p  # 8x8 positions
    else:
        p = depth * width ** 2 + 64 * width
        fwd = p
    if method in ("jacobian_contraction", "ntklit_ntk_jc"):
        return (n * n * p + 3 * n * fwd) * 2 / 1e9
    if method == "ntk_vector_products":
        return (n * n * 3 * fwd) * 2 / 1e9
    if method == "ntklit_fcn":
        return (3 * n * fwd + 2 * depth * n * n * width) * 2 / 1e9
    return (n * n * p) * 2 / 1e9  # structured/auto: at most the contraction


# ---------------------------------------------------------------------------------------------
# Worker: one measurement in a fresh process
# ---------------------------------------------------------------------------------------------


def _peak_memory_bytes():
    import jax
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        return int(stats.get("peak_bytes_in_use", -1)), "device peak_bytes_in_use"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024), "process max RSS"


def _time(fn, repeats):
    import jax
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    ts.sort()
    return out, compile_s, ts[len(ts) // 2]


def _network(kind, depth, width, n):
    import jax
    from ntklit import nets
    if kind == "fcn":
        init_fn, apply_fn, _ = nets.fcn(depth, width, activation="relu", W_std=1.5, b_std=0.1)
        x = jax.random.normal(jax.random.key(1), (n, 64))
    else:
        init_fn, apply_fn, _ = nets.cnn(depth, width, activation="relu", W_std=1.5, b_std=0.1,
                                        readout="gap")
        x = jax.random.normal(jax.random.key(1), (n, 8, 8, 1))
    _, params = init_fn(jax.random.key(0), x.shape)
    return init_fn, apply_fn, params, x


def worker(spec: dict) -> dict:
    import jax
    import numpy as np

    import ntklit  # noqa: F401
    from ntklit import empirical as E

    kind, depth, width, n = spec["kind"], spec["depth"], spec["width"], spec["n"]
    method, repeats = spec["method"], spec["repeats"]
    rec = {"kind": kind, "depth": depth, "width": width, "inputs": n, "method": method}
    if spec["mode"] == "ensemble":
        return _ensemble_worker(spec, rec)
    init_fn, apply_fn, params, x = _network(kind, depth, width, n)
    if method == "ntklit_fcn":
        fn = lambda: E.fcn_ntk(params, x, W_std=1.5, b_std=0.1)  # noqa: E731
    elif method == "ntklit_ntk_jc":
        fn = lambda: E.ntk(apply_fn, params, x)  # noqa: E731
    else:
        fn = lambda: E.ntk(apply_fn, params, x, implementation=method)  # noqa: E731
    try:
        K, compile_s, run_s = _time(fn, repeats)
    except Exception as e:  # noqa: BLE001 - recorded as the measurement's outcome
        rec.update(status="error", error=f"{type(e).__name__}: {str(e)[:300]}")
        return rec
    K = np.asarray(K, dtype=np.float64)
    np.save(spec["out_npy"], K)
    peak, how = _peak_memory_bytes()
    rec.update(status="ok", compile_s=compile_s, run_s=run_s, peak_memory_MiB=peak / 2 ** 20,
               memory_measure=how)
    return rec


def _ensemble_worker(spec, rec):
    import jax
    import numpy as np

    from ntklit import empirical as E
    from ntklit import nets

    depth, width, n, S = spec["depth"], spec["width"], spec["n"], spec["samples"]
    rec["samples"] = S
    init_fn, apply_fn, _ = nets.fcn(depth, width, activation="relu", W_std=1.5, b_std=0.1)
    x = jax.random.normal(jax.random.key(1), (n, 64))
    key = jax.random.key(2)
    kw = dict(W_std=1.5, b_std=0.1)
    method = spec["method"]
    if method == "ensemble_vmap":
        fn = lambda: E.fcn_ensemble_kernels(init_fn, key, x, n_samples=S, chunk_size=S,  # noqa: E731
                                            init_mode="vmap", **kw).ntk
    elif method == "loop_init_fn":
        def fn():
            out = []
            for k in jax.random.split(key, S):
                _, p = init_fn(k, x.shape)
                out.append(E.fcn_ntk(p, x, **kw))
            return jax.numpy.stack(out)
    elif method == "loop_jit":
        one = jax.jit(lambda k: E.fcn_kernels(init_fn(k, x.shape)[1], x, **kw).ntk)

        def fn():
            return jax.numpy.stack([one(k) for k in jax.random.split(key, S)])
    else:
        raise ValueError(f"unknown ensemble method {method!r}")
    K, compile_s, run_s = _time(fn, spec["repeats"])
    np.save(spec["out_npy"], np.asarray(K, dtype=np.float64))
    peak, how = _peak_memory_bytes()
    rec.update(status="ok", compile_s=compile_s, run_s=run_s, peak_memory_MiB=peak / 2 ** 20,
               memory_measure=how)
    return rec


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _run_worker(spec, timeout):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                           capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**_base(spec), "status": "error", "error": f"timeout after {timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        return {**_base(spec), "status": "error",
                "error": f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:]}"}
    rec = json.loads(lines[-1][len("RESULT "):])
    rec["process_wall_s"] = time.perf_counter() - t
    return rec


def _base(spec):
    return {"kind": spec["kind"], "depth": spec["depth"], "width": spec["width"],
            "inputs": spec["n"], "method": spec["method"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-gflop", type=float, default=2000.0,
                    help="skip methods whose estimated cost exceeds this (GFLOP)")
    ap.add_argument("--timeout", type=int, default=600, help="per-measurement limit (s)")
    ap.add_argument("--out", default=None, help="results file (default by device)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        rec = worker(json.loads(args.worker))
        print("RESULT " + json.dumps(rec))
        return
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")

    import numpy as np
    import jax
    import ntklit  # noqa: F401
    import neural_tangents as nt

    dev = jax.devices()[0]
    device = f"{dev.platform}: {dev.device_kind}" + (
        f", {os.cpu_count()} CPU cores" if dev.platform == "cpu" else "")
    tag = "cpu" if dev.platform == "cpu" else "gpu"
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"empirical_{tag}.json"
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_empirical_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    prof = PROFILES[args.profile]
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    results, summary = [], []

    def measure(kind, depth, width, n, methods, ref_method):
        recs = {}
        for m in methods:
            spec = {"mode": "kernel", "kind": kind, "depth": depth, "width": width, "n": n,
                    "method": m, "repeats": args.repeats,
                    "out_npy": str(tmp / f"{kind}_{depth}_{width}_{n}_{m}.npy")}
            est = _estimate_gflop(kind, depth, width, n, m)
            if est > args.max_gflop:
                rec = {**_base(spec), "status": "skipped",
                       "error": f"estimated {est:.0f} GFLOP > --max-gflop {args.max_gflop:g}"}
            else:
                print(f"{kind} depth={depth} width={width} n={n} {m} ...", flush=True)
                rec = _run_worker(spec, args.timeout)
            rec["est_gflop"] = round(est, 1)
            recs[m] = rec
        ref = recs[ref_method]
        if ref.get("status") == "ok":
            Kref = np.load(tmp / f"{kind}_{depth}_{width}_{n}_{ref_method}.npy")
            for m, rec in recs.items():
                if rec.get("status") == "ok":
                    K = np.load(tmp / f"{kind}_{depth}_{width}_{n}_{m}.npy")
                    rec["max_rel_diff"] = float(np.max(np.abs(K - Kref)) / np.max(np.abs(Kref)))
        for rec in recs.values():
            results.append(rec)
            print("   ", {k: rec.get(k) for k in ("method", "status", "run_s", "max_rel_diff",
                                                    "error")}, flush=True)
        return recs

    for depth, width, n in prof["fcn"]:
        recs = measure("fcn", depth, width, n, ("ntklit_fcn",) + NT_METHODS, "ntklit_fcn")
        ours = recs["ntklit_fcn"]
        for rec in recs.values():
            if rec.get("status") == "ok" and ours.get("status") == "ok":
                rec["ratio_to_ntklit_fcn"] = rec["run_s"] / ours["run_s"]
        ok_nt = {m: r for m, r in recs.items() if m in NT_METHODS and r.get("status") == "ok"}
        if ours.get("status") == "ok" and ok_nt:
            fastest = min(ok_nt, key=lambda m: ok_nt[m]["run_s"])
            r = ok_nt[fastest]["run_s"] / ours["run_s"]
            summary.append({"claim": f"FCN d={depth} w={width} n={n}: ntklit fast path at "
                                     f"least as fast as the fastest NT implementation "
                                     f"that ran ({fastest})",
                            "measured": f"{r:.1f}x", "met": bool(r >= 1.0)})
        if (depth, width, n) == (10, 1024, 256):
            jc = recs["jacobian_contraction"]
            if jc.get("status") == "ok" and ours.get("status") == "ok":
                r = jc["run_s"] / ours["run_s"]
                summary.append({"claim": "FCN d=10 w=1024 n=256: ntklit >= 50x faster than "
                                         "JACOBIAN_CONTRACTION", "measured": f"{r:.0f}x",
                                "met": bool(r >= 50)})
            else:
                summary.append({"claim": "FCN d=10 w=1024 n=256: ntklit >= 50x faster than "
                                         "JACOBIAN_CONTRACTION",
                                "measured": f"not measured ({jc.get('status')}: "
                                            f"{jc.get('error', '')})", "met": None})

    for depth, width, n in prof["cnn"]:
        measure("cnn", depth, width, n, ("ntklit_ntk_jc",) + NT_METHODS,
                "jacobian_contraction")

    depth, width, n, S = prof["ensemble"]
    ens = {}
    for m in ("ensemble_vmap", "loop_jit", "loop_init_fn"):
        spec = {"mode": "ensemble", "kind": "fcn", "depth": depth, "width": width, "n": n,
                "samples": S, "method": m, "repeats": args.repeats,
                "out_npy": str(tmp / f"ens_{m}.npy")}
        print(f"ensemble {m} ...", flush=True)
        ens[m] = _run_worker(spec, args.timeout)
    if ens["ensemble_vmap"].get("status") == "ok":
        Kv = np.load(tmp / "ens_ensemble_vmap.npy")
        for m, rec in ens.items():
            if rec.get("status") == "ok":
                K = np.load(tmp / f"ens_{m}.npy")
                rec["max_rel_diff"] = float(np.max(np.abs(K - Kv)) / np.max(np.abs(Kv)))
                rec["ratio_to_ensemble_vmap"] = rec["run_s"] / ens["ensemble_vmap"]["run_s"]
            if m != "ensemble_vmap" and rec.get("status") == "ok":
                r = rec["ratio_to_ensemble_vmap"]
                summary.append({"claim": f"ensemble of {S} FCNs (d={depth} w={width} n={n}): "
                                         f"vmap >= 10x faster than Python loop ({m})",
                                "measured": f"{r:.1f}x", "met": bool(r >= 10)})
    results += list(ens.values())

    versions = {"jax": jax.__version__, "neural-tangents": nt.__version__,
                "numpy": np.__version__, "python": platform.python_version()}
    doc = {
        "title": f"Empirical NTK: ntklit vs neural-tangents ({tag.upper()})",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "command": "python benchmarks/bench_empirical.py" + (
            f" --profile {args.profile}" if args.profile != "quick" else ""),
        "versions": versions,
        "config": {"profile": args.profile, "dtype": "float32", "repeats": args.repeats,
                   "network": "nets.fcn/cnn, ReLU, W_std=1.5, b_std=0.1, NTK param., 1 output",
                   "fcn_input_dim": 64, "cnn_input": "8x8x1, GAP readout",
                   "max_gflop": args.max_gflop,
                   "loadavg_1min_start_end": f"{load_start[0]:.1f} / {os.getloadavg()[0]:.1f}",
                   "total_wall_s": round(time.perf_counter() - t_start, 1)},
        "summary": summary,
        "results": results,
        "notes": ("Times are medians of timed calls after one compile call, on a machine "
                  "possibly shared with other work (see loadavg). run_s excludes compilation. "
                  "ratio_to_ntklit_fcn = method time / ntklit fast-path time. "
                  "max_rel_diff = max|K - K_ref| / max|K_ref| in float32."),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    for s in summary:
        print(s)


if __name__ == "__main__":
    main()
