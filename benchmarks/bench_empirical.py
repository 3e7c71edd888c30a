"""Benchmark of empirical-NTK implementations: neural-tangents' four against ntklit's paths.

Usage (one command; writes ``benchmarks/results/empirical_<device>.json``)::

    .venv/bin/python benchmarks/bench_empirical.py            # CPU-sized configurations
    .venv/bin/python benchmarks/bench_empirical.py --profile full   # issue-sized (one GPU)

Every (configuration, method) runs in its own subprocess, so that its peak memory (maximum
resident set size on CPU; ``peak_bytes_in_use`` of the device on GPU) is its own, and an
implementation that fails (e.g. neural-tangents' STRUCTURED_DERIVATIVES or AUTO on a JAX they
do not support) is recorded as an error instead of stopping the run. Each measurement reports
the compile time (first call), the median of ``--repeats`` timed calls (methods estimated above
``ONE_CALL_GFLOP`` are timed by their first call alone, compile included, an upper bound), and
the maximum relative difference ``max|K - K_ref| / max|K_ref|`` to the reference kernel of that
configuration (ntklit's FCN fast path for FCNs, neural-tangents' Jacobian contraction for the
CNN), all in float32 on the same random network and inputs. Methods whose estimated cost exceeds
``--max-gflop`` are skipped and recorded as skipped, with the estimate (in seconds too, from the
method's throughput on the configurations measured before). On 2 CPU cores the default
``--max-gflop 5000`` runs everything of the quick profile, NTK_VECTOR_PRODUCTS at depth 10, width
1024, 256 inputs included (~4150 GFLOP, measured ~75 s), in about 15-18 minutes.

The ensemble measurement times the NTK of 100 independently initialized FCNs, for Gaussian and
orthogonal init, over a range of sizes (the widths of chapters 4 and 7, from dispatch-bound
width 8 to compute-bound width 512): ``ntklit.empirical.fcn_ensemble_kernels`` (one compiled
call; ``init_mode="auto"``: parameters drawn inside ``vmap`` for Gaussian inits, one network
after another inside the compiled call (``lax.map``) for orthogonal ones, see
``ntklit.empirical.ensemble``) against the Python loops over seeds a researcher would write:
``loop_init_fn_nt`` (stax ``init_fn`` + a jitted neural-tangents ``empirical_ntk_fn`` per seed),
``loop_init_fn_fast`` (``init_fn`` + ntklit's fast path ``fcn_ntk`` per seed) and ``loop_jit``
(one jitted ``init + fast-path kernel`` function called per seed). The ensemble worker also
times its two parts (drawing the parameters; the vmapped kernels) and the cost of one Python
dispatch of a jitted call, which bound the speed-up any batching can give on this device.
Workers run with ``OPENBLAS_NUM_THREADS=1`` (jaxlib's CPU LAPACK, used by the QR of orthogonal
inits, is scipy's OpenBLAS, whose own threads oversubscribe a 2-core machine that XLA already
keeps busy; measured: 100 orthogonal depth-2 width-128 inits took 0.22 s with one OpenBLAS
thread and 0.6-4.9 s with the default at load ~7).
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
        # (label, depth, width, inputs, input_dim, networks)
        "ensemble": [
            ("dispatch-bound", 2, 8, 20, 64, 100),
            ("chapter 7 NTK ensembles", 8, 32, 2, 16, 100),
            ("", 2, 128, 32, 64, 100),
            ("chapter 4 Fig. 1, widest quick width", 1, 256, 20, 1024, 100),
            ("compute-bound", 2, 512, 32, 64, 100),
        ],
    },
    # the ranges (depth 5-20, width 512-4096, 128-1024 inputs), for one GPU.
    "full": {
        "fcn": [(5, 512, 128), (10, 1024, 256), (20, 1024, 256), (5, 4096, 1024), (10, 2048, 512)],
        "cnn": [(3, 128, 64)],
        "ensemble": [
            ("dispatch-bound", 2, 8, 20, 64, 100),
            ("chapter 7 NTK ensembles", 8, 32, 2, 16, 100),
            ("chapter 4 deep FCNs", 3, 128, 12, 64, 100),
            ("chapter 4 Fig. 1", 1, 1024, 20, 1024, 100),
            ("compute-bound", 3, 512, 64, 64, 100),
        ],
    },
}
ENSEMBLE_METHODS = ("ensemble", "loop_init_fn_nt", "loop_init_fn_fast", "loop_jit")
#: above this estimated cost a method is timed by one call (compile included), not 1 + repeats
ONE_CALL_GFLOP = 300.0


def _estimate_gflop(kind, depth, width, n, method):
    """Rough FLOP estimates (arXiv:2206.08720, Table 1) used only to skip hopeless runs."""
    if kind == "cnn":
        p = depth * 9 * width**2 + 9 * width
        fwd = 64 * p  # 8x8 positions
    else:
        p = depth * width**2 + 64 * width
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
    """First call (compile + run) and the median of ``repeats`` further calls; with
    ``repeats == 0`` the run time is the first call's (an upper bound: it includes compiling)."""
    import jax

    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t
    if repeats == 0:
        return out, compile_s, compile_s
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
        init_fn, apply_fn, _ = nets.cnn(
            depth, width, activation="relu", W_std=1.5, b_std=0.1, readout="gap"
        )
        x = jax.random.normal(jax.random.key(1), (n, 8, 8, 1))
    _, params = init_fn(jax.random.key(0), x.shape)
    return init_fn, apply_fn, params, x


def worker(spec: dict) -> dict:
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
    rec.update(
        status="ok",
        compile_s=compile_s,
        run_s=run_s,
        peak_memory_MiB=peak / 2**20,
        memory_measure=how,
    )
    if repeats == 0:
        rec["run_s_includes_compile"] = True
    return rec


def _ensemble_worker(spec, rec):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ntklit import empirical as E
    from ntklit import nets

    import neural_tangents as nt

    depth, width, n, S = spec["depth"], spec["width"], spec["n"], spec["samples"]
    init, d_in = spec["init"], spec["input_dim"]
    rec.update(samples=S, init=init, input_dim=d_in)
    init_fn, apply_fn, _ = nets.fcn(
        depth, width, activation="relu", W_std=1.5, b_std=0.1, init=init
    )
    x = jax.random.normal(jax.random.key(1), (n, d_in))
    key = jax.random.key(2)
    kw = dict(W_std=1.5, b_std=0.1)
    method = spec["method"]
    if method == "ensemble":
        mode = E._resolve_init_mode("auto", init_fn, (-1, d_in))
        rec["init_mode"] = mode

        def fn():
            return E.fcn_ensemble_kernels(
                init_fn, key, x, n_samples=S, chunk_size=S, init_mode="auto", **kw
            ).ntk
    elif method == "loop_init_fn_nt":
        ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0))

        def fn():
            out = []
            for k in jax.random.split(key, S):
                _, p = init_fn(k, x.shape)
                out.append(ntk_fn(x, None, p))
            return jnp.stack(out)
    elif method == "loop_init_fn_fast":

        def fn():
            out = []
            for k in jax.random.split(key, S):
                _, p = init_fn(k, x.shape)
                out.append(E.fcn_ntk(p, x, **kw))
            return jnp.stack(out)
    elif method == "loop_jit":
        one = jax.jit(lambda k: E.fcn_kernels(init_fn(k, x.shape)[1], x, **kw).ntk)

        def fn():
            return jnp.stack([one(k) for k in jax.random.split(key, S)])
    else:
        raise ValueError(f"unknown ensemble method {method!r}")
    K, compile_s, run_s = _time(fn, spec["repeats"])
    np.save(spec["out_npy"], np.asarray(K, dtype=np.float64))
    peak, how = _peak_memory_bytes()
    rec.update(
        status="ok",
        compile_s=compile_s,
        run_s=run_s,
        peak_memory_MiB=peak / 2**20,
        memory_measure=how,
    )
    if method == "ensemble":
        # where the time goes: drawing the parameters vs the vmapped kernels, and the cost of
        # one Python dispatch of a jitted call (what a loop over seeds pays per network)
        keys = jax.random.split(key, S)

        def draw(k):
            return init_fn(k, x.shape)[1]

        if mode == "vmap":
            init_all = jax.jit(jax.vmap(draw))
        else:
            init_all = jax.jit(lambda ks: jax.lax.map(draw, ks))
        params = init_all(keys)
        kern = E._kernel_runner(E._FcnKernels(E._relu, 1.5, 0.1, "ntk", True, True))
        _, _, init_s = _time(lambda: init_all(keys), spec["repeats"])
        _, _, kernel_s = _time(lambda: kern(params, (x, x)), spec["repeats"])
        tiny = jax.jit(lambda k: jax.random.key_data(k)[..., :1])
        _, _, disp = _time(lambda: [tiny(k) for k in keys], spec["repeats"])
        rec.update(init_s=init_s, kernel_s=kernel_s, dispatch_s_per_call=disp / S)
    return rec


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _run_worker(spec, timeout):
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OPENBLAS_NUM_THREADS="1",
    )
    t = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {**_base(spec), "status": "error", "error": f"timeout after {timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        return {
            **_base(spec),
            "status": "error",
            "error": f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:]}",
        }
    rec = json.loads(lines[-1][len("RESULT ") :])
    rec["process_wall_s"] = time.perf_counter() - t
    return rec


def _base(spec):
    return {
        "kind": spec["kind"],
        "depth": spec["depth"],
        "width": spec["width"],
        "inputs": spec["n"],
        "method": spec["method"],
    }


def _max_rel_diffs(recs: dict, ref: str, npy) -> None:
    """Set ``max_rel_diff`` (max |K - K_ref| / max |K_ref|) on every successful record of
    ``recs`` (method -> record), from the kernels each run saved at ``npy(method)``."""
    import numpy as np

    if recs[ref].get("status") != "ok":
        return
    k_ref = np.load(npy(ref))
    for m, rec in recs.items():
        if rec.get("status") == "ok":
            k = np.load(npy(m))
            rec["max_rel_diff"] = float(np.max(np.abs(k - k_ref)) / np.max(np.abs(k_ref)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--max-gflop",
        type=float,
        default=5000.0,
        help="skip methods whose estimated cost exceeds this (GFLOP)",
    )
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

    import jax
    import numpy as np

    import ntklit  # noqa: F401

    import neural_tangents as nt

    dev = jax.devices()[0]
    device = f"{dev.platform}: {dev.device_kind}" + (
        f", {os.cpu_count()} CPU cores" if dev.platform == "cpu" else ""
    )
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
            est = _estimate_gflop(kind, depth, width, n, m)
            spec = {
                "mode": "kernel",
                "kind": kind,
                "depth": depth,
                "width": width,
                "n": n,
                "method": m,
                "repeats": 0 if est > ONE_CALL_GFLOP else args.repeats,
                "out_npy": str(tmp / f"{kind}_{depth}_{width}_{n}_{m}.npy"),
            }
            if est > args.max_gflop:
                # the same method's measured throughput (estimated GFLOP per second) on the
                # configurations run so far turns the estimate into seconds
                done = [
                    r
                    for r in results
                    if r.get("method") == m and r.get("status") == "ok" and r.get("kind") == kind
                ]
                msg = f"estimated {est:.0f} GFLOP > --max-gflop {args.max_gflop:g}"
                rec = {**_base(spec), "status": "skipped"}
                rate = max(
                    (
                        _estimate_gflop(kind, r["depth"], r["width"], r["inputs"], m) / r["run_s"]
                        for r in done
                    ),
                    default=0.0,
                )
                if rate > 0:
                    rec["est_s_per_call"] = round(est / rate, 1)
                    msg += (
                        f"; at the {rate:.0f} GFLOP/s this method reached on "
                        f"d={done[-1]['depth']} w={done[-1]['width']} "
                        f"n={done[-1]['inputs']} in this run, one call would take "
                        f"~{est / rate:.0f} s"
                    )
                rec["error"] = msg
            else:
                print(f"{kind} depth={depth} width={width} n={n} {m} ...", flush=True)
                rec = _run_worker(spec, args.timeout)
            rec["est_gflop"] = round(est, 1)
            recs[m] = rec
        _max_rel_diffs(recs, ref_method, lambda m: tmp / f"{kind}_{depth}_{width}_{n}_{m}.npy")
        for rec in recs.values():
            results.append(rec)
            print(
                "   ",
                {k: rec.get(k) for k in ("method", "status", "run_s", "max_rel_diff", "error")},
                flush=True,
            )
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
            summary.append(
                {
                    "claim": f"FCN d={depth} w={width} n={n}: ntklit fast path at "
                    f"least as fast as the fastest NT implementation "
                    f"that ran ({fastest})",
                    "measured": f"{r:.1f}x",
                    "met": bool(r >= 1.0),
                }
            )
        if (depth, width, n) == (10, 1024, 256):
            jc = recs["jacobian_contraction"]
            if jc.get("status") == "ok" and ours.get("status") == "ok":
                r = jc["run_s"] / ours["run_s"]
                summary.append(
                    {
                        "claim": "FCN d=10 w=1024 n=256: ntklit >= 50x faster than "
                        "JACOBIAN_CONTRACTION",
                        "measured": f"{r:.0f}x",
                        "met": bool(r >= 50),
                    }
                )
            else:
                summary.append(
                    {
                        "claim": "FCN d=10 w=1024 n=256: ntklit >= 50x faster than "
                        "JACOBIAN_CONTRACTION",
                        "measured": f"not measured ({jc.get('status')}: {jc.get('error', '')})",
                        "met": None,
                    }
                )

    for depth, width, n in prof["cnn"]:
        measure("cnn", depth, width, n, ("ntklit_ntk_jc",) + NT_METHODS, "jacobian_contraction")

    ens_results = []
    for label, depth, width, n, d_in, S in prof["ensemble"]:
        for init in ("gaussian", "orthogonal"):
            ens = {}
            for m in ENSEMBLE_METHODS:
                spec = {
                    "mode": "ensemble",
                    "kind": "fcn",
                    "depth": depth,
                    "width": width,
                    "n": n,
                    "input_dim": d_in,
                    "samples": S,
                    "init": init,
                    "method": m,
                    "repeats": args.repeats,
                    "out_npy": str(tmp / f"ens_{depth}_{width}_{n}_{init}_{m}.npy"),
                }
                print(f"ensemble d={depth} w={width} n={n} {init} {m} ...", flush=True)
                ens[m] = _run_worker(spec, args.timeout)
                ens[m].update(init=init, input_dim=d_in, samples=S, label=label)
            ours = ens["ensemble"]
            _max_rel_diffs(
                ens, "ensemble", lambda m: tmp / f"ens_{depth}_{width}_{n}_{init}_{m}.npy"
            )
            if ours.get("status") == "ok":
                for rec in ens.values():
                    if rec.get("status") == "ok":
                        rec["ratio_to_ensemble"] = rec["run_s"] / ours["run_s"]
                init_share = ours["init_s"] / ours["run_s"]
                kern_share = ours["kernel_s"] / ours["run_s"]
                why = (
                    f"ensemble {1e3 * ours['run_s'] / S:.2f} ms per network "
                    f"(drawing parameters {100 * init_share:.0f}%, kernels "
                    f"{100 * kern_share:.0f}% of it, timed separately; "
                    f"init_mode={ours['init_mode']}); a trivial jitted call costs "
                    f"{1e3 * ours['dispatch_s_per_call']:.2f} ms of Python dispatch"
                )
                lj = ens["loop_jit"]
                if lj.get("status") == "ok":
                    per = (lj["run_s"] - S * ours["dispatch_s_per_call"]) / S
                    why += (
                        f"; the loop of jitted calls takes {1e3 * lj['run_s'] / S:.2f} ms "
                        f"per network ({1e3 * per:.2f} ms besides that dispatch)"
                    )
                for m, rec in ens.items():
                    if m == "ensemble" or rec.get("status") != "ok":
                        if m != "ensemble":
                            summary.append(
                                {
                                    "claim": f"ensemble of {S} {init} FCNs (d={depth} "
                                    f"w={width} n={n}) vs {m}",
                                    "measured": f"not measured: {rec.get('error')}",
                                    "met": None,
                                }
                            )
                        continue
                    r = rec["ratio_to_ensemble"]
                    summary.append(
                        {
                            "claim": f"ensemble of {S} {init} FCNs (d={depth} "
                            f"w={width} n={n}{', ' + label if label else ''}):"
                            f" >= 10x faster than a Python loop ({m})",
                            "measured": f"{r:.1f}x",
                            "met": bool(r >= 10),
                            "reason": why,
                        }
                    )
            ens_results += list(ens.values())
    results += ens_results

    versions = {
        "jax": jax.__version__,
        "neural-tangents": nt.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    doc = {
        "title": f"Empirical NTK: ntklit vs neural-tangents ({tag.upper()})",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "command": "python benchmarks/bench_empirical.py"
        + (f" --profile {args.profile}" if args.profile != "quick" else ""),
        "versions": versions,
        "config": {
            "profile": args.profile,
            "dtype": "float32",
            "repeats": args.repeats,
            "network": "nets.fcn/cnn, ReLU, W_std=1.5, b_std=0.1, NTK param., 1 output",
            "fcn_input_dim": 64,
            "cnn_input": "8x8x1, GAP readout",
            "max_gflop": args.max_gflop,
            "one_call_above_gflop": ONE_CALL_GFLOP,
            "worker_env": "OPENBLAS_NUM_THREADS=1 (see the script's docstring)",
            "loadavg_1min_start_end": f"{load_start[0]:.1f} / {os.getloadavg()[0]:.1f}",
            "total_wall_s": round(time.perf_counter() - t_start, 1),
        },
        "summary": summary,
        "results": results,
        "notes": (
            "Times are medians of timed calls after one compile call, on a machine "
            "possibly shared with other work (see loadavg). run_s excludes compilation. "
            "ratio_to_ntklit_fcn = method time / ntklit fast-path time. "
            "max_rel_diff = max|K - K_ref| / max|K_ref| in float32. "
            "run_s_includes_compile: timed by one call (estimated cost above "
            "one_call_above_gflop), so run_s is an upper bound. Ensembles: "
            "ratio_to_ensemble = loop time / ensemble time for the NTK of the same "
            "100 networks (same keys); init_s / kernel_s = the ensemble's two parts "
            "timed separately; dispatch_s_per_call = one Python call of a tiny jitted "
            "function. On 2 CPU cores the matrix products and random-number generation "
            "of a network cost the same batched or not, so batching saves only the "
            "per-seed dispatch and op-by-op execution; on a GPU batching also fills the "
            "device."
        ),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    for s in summary:
        print(s)


if __name__ == "__main__":
    main()
