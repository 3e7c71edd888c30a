"""The GPU half of the book in one job on an offline GPU node, and bringing its records home.

Cluster GPU nodes are usually offline and come with their own CUDA Python stack (DESIGN.md
section 8). The path has three steps:

1. ``bash scripts/wheelhouse.sh DIR`` (where the registries are reachable) downloads exactly
   the wheels the node lacks (``scripts/node-wheels.txt``) with a manifest;
2. ``bash scripts/gpu_run.sh WHEELHOUSE OUTDIR [CHAPTER ...]`` on the node installs them into
   a private folder (never the node's site-packages) and runs :func:`run_node`
   (``python -m ntklit node``): check that JAX sees a GPU, run ``tests/test_compat.py`` on the
   node's JAX, then the full profile of every GPU chapter (those whose profile file has a
   ``gpu:`` sentence) through the runner, within a time budget, then the GPU benchmarks
   (``benchmarks/gpu.yaml``), and pack what comes back into at most :data:`MAX_FILES` files;
3. ``python -m ntklit ingest OUTDIR`` (:func:`ingest`) puts the returned verification records
   in ``book/verified`` (and, with ``--notebooks``, the executed notebooks where ``python -m
   ntklit build`` renders them), rejecting stale, malformed or older records.

**Budget.** Each GPU chapter's profile file declares its share of the node's time,
``budget: {seconds: S, estimate: "how S was estimated"}``. Chapters run in increasing order of
their shares (the most chapters finish when an estimate is wrong); a chapter is started only
when the time left (the budget minus everything since the job started, installation
included) is at least its share, and otherwise recorded as skipped, as is every benchmark
whose share no longer fits. A failing chapter is recorded with its error and the job goes on.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import runner

__all__ = [
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "DEFAULT_BUDGET_S",
    "Share",
    "gpu_chapters",
    "chapter_share",
    "plan",
    "benchmark_shares",
    "run_node",
    "pack",
    "ingest",
    "IngestError",
]

#: Files that come back from the node (the device tool's limit).
MAX_FILES = 8
#: The largest size, in bytes, that one returned file may have (16 MiB).
MAX_FILE_BYTES = 16 * 2**20
#: The node job's time budget in seconds (one job of at most 10 minutes, 9 of them planned).
DEFAULT_BUDGET_S = 540.0


class IngestError(runner.RunnerError):
    """A returned record cannot be ingested (malformed, stale, older than the one in place)."""


@dataclasses.dataclass(frozen=True)
class Share:
    """One item of the node's plan: a chapter or a benchmark and its budget share."""

    name: str
    seconds: float
    estimate: str
    kind: str = "chapter"  # or "benchmark"
    args: tuple[str, ...] = ()


def gpu_chapters(root: Path) -> list[runner.Chapter]:
    """The chapters whose full profile needs a GPU (their profile file has ``gpu:``)."""
    return [ch for ch in runner.chapters(root) if runner._profile_file(ch).get("gpu")]


def chapter_share(chapter: runner.Chapter) -> Share:
    """The chapter's declared budget share (``budget:`` of its profile file).

    Raises:
      RunnerError: the profile file has no ``budget:`` (a GPU chapter needs one), or its
        ``seconds`` is not a positive number or its ``estimate`` not a sentence.
    """
    budget = runner._profile_file(chapter).get("budget")
    if budget is None:
        raise runner.RunnerError(
            f"{chapter.profile_file}: a GPU chapter needs 'budget: {{seconds: S, estimate: "
            f"...}}' (its share of the node's time and how it was estimated)"
        )
    return Share(chapter.name, float(budget["seconds"]), " ".join(budget["estimate"].split()))


def benchmark_shares(root: Path) -> list[Share]:
    """The GPU benchmarks of ``benchmarks/gpu.yaml`` (``[]`` when the file is missing).

    Each entry: ``name`` (a script ``benchmarks/<name>.py``), ``args`` (its command-line
    arguments; ``{out}`` is replaced by the results file), ``seconds`` and ``estimate``.
    """
    import yaml

    path = root / "benchmarks" / "gpu.yaml"
    if not path.is_file():
        return []
    out = []
    for e in yaml.safe_load(path.read_text()) or []:
        script = root / "benchmarks" / f"{e['name']}.py"
        if not script.is_file():
            raise runner.RunnerError(f"{path}: no benchmark script {script.name}")
        runner.check_budget(path, e)
        out.append(
            Share(
                e["name"],
                float(e["seconds"]),
                " ".join(e["estimate"].split()),
                "benchmark",
                tuple(str(a) for a in e.get("args", [])),
            )
        )
    return out


def plan(shares: Sequence[Share], budget_s: float) -> tuple[list[Share], list[Share]]:
    """Order chapters by increasing share (benchmarks after them, in their order) and split
    off what cannot fit even when everything before it takes exactly its share.

    Args:
      shares: the chapters' and benchmarks' shares.
      budget_s: the job's budget in seconds.

    Returns:
      ``(planned, never_fits)``; at run time :func:`run_node` still skips a planned item when
      the time actually left is below its share.
    """
    chapters = sorted((s for s in shares if s.kind == "chapter"), key=lambda s: s.seconds)
    ordered = chapters + [s for s in shares if s.kind != "chapter"]
    planned, never, used = [], [], 0.0
    for s in ordered:
        if used + s.seconds <= budget_s:
            planned.append(s)
            used += s.seconds
        else:
            never.append(s)
    return planned, never


def _log(msg: str) -> None:
    print(msg, flush=True)


def _gpu_check(require_gpu: bool) -> str:
    import jax

    devices = jax.devices()
    kinds = sorted({f"{d.platform}: {d.device_kind}" for d in devices})
    if any(d.platform == "gpu" for d in devices):
        return f"JAX {jax.__version__} sees {len(devices)} device(s): {', '.join(kinds)}"
    if require_gpu:
        raise runner.RunnerError(
            f"JAX {jax.__version__} sees no GPU ({', '.join(kinds)}): check the node's CUDA "
            f"plugin (jax-cuda*-plugin) and CUDA_VISIBLE_DEVICES; nothing was run"
        )
    return f"GPU check SKIPPED (CPU rehearsal): JAX {jax.__version__} on {', '.join(kinds)}"


def run_node(
    root: Path,
    out: Path,
    names: Sequence[str] = (),
    *,
    profile: str = "full",
    budget_s: float = DEFAULT_BUDGET_S,
    started: float | None = None,
    require_gpu: bool = True,
    compat_tests: bool = True,
    benchmarks: bool = True,
) -> dict[str, Any]:
    """The node job: GPU check, compat tests, the GPU chapters' profile within the budget,
    the GPU benchmarks, and the packed results in ``out``.

    Args:
      root: the repository (a copy of it on the node).
      out: the folder whose files come back (at most :data:`MAX_FILES`).
      names: chapters to run (default: every GPU chapter).
      profile: ``"full"`` on the node; ``"shape"`` for the CPU rehearsal.
      budget_s: seconds for the whole job, counted from ``started``.
      started: when the job started (``time.time()``; default now), installation included.
      require_gpu: fail before running anything when JAX sees no GPU.
      compat_tests: run ``tests/test_compat.py`` first and stop if it fails.
      benchmarks: run ``benchmarks/gpu.yaml``'s benchmarks after the chapters.

    Returns:
      The summary written to ``out/summary.json``.
    """
    started = time.time() if started is None else started
    if profile not in runner.RECORDED_PROFILES:
        raise runner.RunnerError(
            f"profile must be one of {', '.join(runner.RECORDED_PROFILES)}, got {profile!r}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    selected = runner.select(root, names) if names else gpu_chapters(root)
    shares = [chapter_share(ch) for ch in selected]  # every share checked before anything runs
    for ch in selected:
        runner.resolve_parameters(ch, profile, {})
    bench = benchmark_shares(root) if benchmarks else []
    planned, never = plan(shares + bench, budget_s)
    summary: dict[str, Any] = {
        "profile": profile,
        "budget_s": budget_s,
        "items": [],
        "device": runner.device_description(),
        "versions": runner.package_versions(),
    }

    def left() -> float:
        return budget_s - (time.time() - started)

    summary["gpu_check"] = _gpu_check(require_gpu)
    _log(summary["gpu_check"])
    if compat_tests:
        t = time.time()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(root / "tests" / "test_compat.py"),
            ],
            capture_output=True,
            text=True,
            cwd=root,
        )
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
        summary["compat_tests"] = {
            "ok": proc.returncode == 0,
            "seconds": round(time.time() - t, 1),
            "result": tail[0],
        }
        _log(f"compat tests on this JAX: {tail[0]} ({time.time() - t:.0f} s)")
        if proc.returncode != 0:
            (out / "compat_tests.log").write_text(proc.stdout[-200_000:] + proc.stderr[-50_000:])
            summary["stopped"] = (
                "tests/test_compat.py failed on this JAX: ntklit.compat does "
                "not work here; no chapter was run (see compat_tests.log)"
            )
            _log("STOPPED: " + summary["stopped"])
            return _finish(root, out, summary, started)
    paths = runner.BuildPaths.default(root, out / "_work")
    bench_out = out / "_work" / "benchmarks"
    for s in never:
        summary["items"].append(
            {
                "name": s.name,
                "kind": s.kind,
                "share_s": s.seconds,
                "status": "skipped",
                "why": "share exceeds the budget",
            }
        )
    for s in planned:
        item = {"name": s.name, "kind": s.kind, "share_s": s.seconds}
        summary["items"].append(item)
        if left() < s.seconds:
            item.update(status="skipped", why=f"{left():.0f} s left, share {s.seconds:.0f} s")
            _log(f"{s.name}: SKIPPED ({item['why']})")
            continue
        t = time.time()
        if s.kind == "chapter":
            try:
                (rec,) = runner.run_chapters(
                    root, [s.name], profile=profile, force=True, paths=paths, progress=False
                )
                item.update(
                    status="ok", checks=f"{sum(c['passed'] for c in rec.checks)}/{len(rec.checks)}"
                )
            except runner.ChapterFailed as e:
                item.update(status="failed", error=str(e)[:2000])
            except Exception as e:  # the runner itself broke: record it, go on
                item.update(status="failed", error=f"{type(e).__name__}: {e}"[:2000])
        else:
            bench_out.mkdir(parents=True, exist_ok=True)
            res = bench_out / f"{s.name}_gpu.json"
            args = [a.replace("{out}", str(res)) for a in s.args]
            proc = subprocess.run(
                [sys.executable, str(root / "benchmarks" / f"{s.name}.py"), *args],
                capture_output=True,
                text=True,
                cwd=root,
                timeout=max(left(), 1),
            )
            (bench_out / f"{s.name}.log").write_text(
                proc.stdout[-100_000:] + proc.stderr[-100_000:]
            )
            item.update(
                status="ok" if proc.returncode == 0 else "failed", returncode=proc.returncode
            )
        item["seconds"] = round(time.time() - t, 1)
        _log(
            f"{s.name}: {item['status']} in {item['seconds']:.0f} s (share {s.seconds:.0f} s)"
            + (f", {item['checks']} checks" if "checks" in item else "")
            + (f": {item['error'].splitlines()[0]}" if "error" in item else "")
        )
    return _finish(root, out, summary, started)


def _finish(root: Path, out: Path, summary: dict[str, Any], started: float) -> dict[str, Any]:
    summary["total_s"] = round(time.time() - started, 1)
    work = out / "_work"
    files = pack(root, work, out, since=started)
    summary["files"] = [f.name for f in files]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    _log(f"node job: {summary['total_s']:.0f} s in all; files: {', '.join(summary['files'])}")
    return summary


def pack(root: Path, work: Path, out: Path, since: float) -> list[Path]:
    """Pack the job's results into at most :data:`MAX_FILES` files in ``out``.

    ``verified.tar.gz`` (the verification records written since ``since``, i.e. by this
    job's runs; the repository's committed ones stay out), ``notebooks.tar.gz`` (the
    executed notebooks and their run records), ``benchmarks.tar.gz`` (results and logs), and
    ``summary.json`` (written by the caller) and ``node.log`` (by ``scripts/gpu_run.sh``).

    Args:
      root: the repository (its ``book/verified`` holds the records).
      work: the job's build folder (``executed``, ``records``, ``failed``, ``benchmarks``).
      out: the folder whose files come back.
      since: the job's start (epoch seconds): only records written since are packed.

    Returns:
      The files written.

    Raises:
      RunnerError: a packed file exceeds :data:`MAX_FILE_BYTES`.
    """
    groups = {
        "verified.tar.gz": [
            p
            for p in sorted((root / "book" / "verified").glob("*.json"))
            if p.stat().st_mtime >= since
        ],
        "notebooks.tar.gz": [
            *sorted((work / "executed").glob("*.ipynb")),
            *sorted((work / "records").glob("*.json")),
            *sorted((work / "failed").glob("*")),
        ],
        "benchmarks.tar.gz": sorted((work / "benchmarks").glob("*")),
    }
    made = []
    for name, members in groups.items():
        if not members:
            continue
        dest = out / name
        with tarfile.open(dest, "w:gz") as tar:
            for m in members:
                tar.add(m, arcname=f"{m.parent.name}/{m.name}")
        if dest.stat().st_size > MAX_FILE_BYTES:
            raise runner.RunnerError(
                f"{dest.name} is {dest.stat().st_size / 2**20:.1f} MiB, "
                f"over the {MAX_FILE_BYTES / 2**20:.0f} MiB a file may have"
            )
        made.append(dest)
    return made


# ------------------------------------------------------------------------------------------
# Bringing the records home
# ------------------------------------------------------------------------------------------


def _members(source: Path, folder: str, tarball: str | None = None) -> list[tuple[str, bytes]]:
    """``(name, content)`` of the files under ``folder/`` in a node's output: a directory
    holding the tarball (``tarball``, default ``<folder>.tar.gz``), the tarball itself, or a
    directory with a ``folder/`` of files."""
    source = Path(source)
    packed = source / (tarball or f"{folder}.tar.gz") if source.is_dir() else source
    if packed.is_file() and packed.name.endswith(".tar.gz"):
        out = []
        with tarfile.open(packed, "r:gz") as tar:
            for m in tar.getmembers():
                if m.isfile() and Path(m.name).parent.name == folder and "/" in m.name:
                    out.append((Path(m.name).name, tar.extractfile(m).read()))
        return out
    if source.is_dir() and (source / folder).is_dir():
        return [
            (p.name, p.read_bytes()) for p in sorted((source / folder).iterdir()) if p.is_file()
        ]
    return []


def ingest(
    root: Path, source: Path, *, notebooks: bool = False, paths: runner.BuildPaths | None = None
) -> list[str]:
    """Put a node's returned verification records where the reproducibility page reads them.

    Every record is checked before any is written: the schema (``runner.load_verification``),
    that its chapter exists, that its parameters equal the chapter's current profile (a stale
    record is rejected) and that it is not older than the record already in
    ``book/verified`` (a newer record is never overwritten by an older one).

    Args:
      root: the repository.
      source: the node's output folder (or its ``verified.tar.gz``, or a single record).
      notebooks: also put the executed notebooks and their run records into the build
        folders (``_build/executed``, ``_build/records``), so that ``python -m ntklit build``
        renders the paper-scale pages.
      paths: build folders (default ``root/_build``).

    Returns:
      What was done, one line per file.

    Raises:
      IngestError: no record found, or a record is malformed, stale or older (nothing is
        written then).
    """
    source = Path(source)
    if source.is_file() and source.suffix == ".json":
        items = [(source.name, source.read_bytes())]
    else:
        items = _members(source, "verified")
    if not items:
        raise IngestError(
            f"{source}: no verification records (expected verified.tar.gz or "
            f"a verified/ folder of <chapter>.<profile>.json files)"
        )
    import tempfile

    plans = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in items:
            p = Path(tmp) / name
            p.write_bytes(data)
            try:
                rec = runner.load_verification(p)
                (ch,) = runner.select(root, [rec["chapter"]])
            except runner.RunnerError as e:
                raise IngestError(f"{name}: rejected: {e}".replace(str(p), name)) from None
            if name != f"{ch.name}.{rec['profile']}.json":
                raise IngestError(
                    f"{name}: rejected: a record of {ch.name}'s {rec['profile']} "
                    f"profile must be named {ch.name}.{rec['profile']}.json"
                )
            if runner.verification_state(ch, rec) == "stale":
                raise IngestError(
                    f"{name}: rejected as stale: its parameters differ from "
                    f"{ch.profile_file.name}'s current {rec['profile']} profile "
                    f"(re-run it with the current profile)"
                )
            dest = runner.verification_path(root, ch, rec["profile"])
            if dest.is_file():
                old = runner.load_verification(dest)
                if old["finished"] > rec["finished"]:
                    raise IngestError(
                        f"{name}: rejected: the record in place finished "
                        f"{old['finished']}, after this one ({rec['finished']})"
                    )
            plans.append((dest, data, rec))
    done = []
    for dest, data, rec in plans:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        done.append(
            f"{dest.relative_to(root)}: {rec['status']}, {rec['checks_passed']}/"
            f"{rec['checks_total']} checks, {rec['device']}, {rec['finished']}"
        )
    if notebooks:
        done += _ingest_notebooks(source, paths or runner.BuildPaths.default(root))
    return done


def _ingest_notebooks(source: Path, paths: runner.BuildPaths) -> list[str]:
    done = []
    for folder, target in (("executed", paths.executed), ("records", paths.records)):
        for name, data in _members(source, folder, "notebooks.tar.gz"):
            target.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)
            done.append(f"{target / name}")
    return done or ["no notebooks.tar.gz: no executed notebooks ingested"]
