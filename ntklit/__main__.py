"""Command line of the book runner: ``python -m ntklit COMMAND`` (or the ``ntklit`` script).

Commands:
  list                      the chapters, in book order
  params CHAPTER            a chapter's parameters, their types, defaults and full-profile values
  run [CHAPTER ...]         execute chapters with papermill (all when none is named)
  build                     build the HTML from the executed chapters into _build/html
  all [CHAPTER ...]         run chapters (every one by default), then build; prints index.html
  node --out DIR [CH ...]   the GPU node job (scripts/gpu_run.sh): GPU check, compat tests,
                            the GPU chapters' full profile within a budget, benchmarks, packed
  ingest SOURCE             bring a node job's records (and, --notebooks, pages) home

Options of run/all: --profile quick|shape|full|auto (auto: full when JAX sees a GPU; shape:
the full profile's shapes with reduced counts; full and shape runs without -p write their
verification record to book/verified/),
-p name=value (repeatable; the value is a Python literal), --force (ignore the cache),
--fail-fast, --log-output (stream the notebooks' output), --build-dir DIR.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import runner


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ntklit", description="Execute the ntklit book's chapters and build it."
    )
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="repository root (default: found from the current directory)",
    )
    p.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="where executed notebooks, records and HTML go (default: ROOT/_build)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the chapters")
    pp = sub.add_parser("params", help="show a chapter's parameters")
    pp.add_argument("chapter")

    def run_opts(sp):
        sp.add_argument("--profile", default="auto", choices=runner.PROFILES)
        sp.add_argument(
            "-p",
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override a parameter (Python literal), e.g. -p 'widths=[8, 64]'",
        )
        sp.add_argument("--force", action="store_true", help="re-run unchanged chapters")
        sp.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
        sp.add_argument(
            "--log-output",
            action="store_true",
            help="stream the notebooks' stdout/stderr (progress bars) here",
        )
        sp.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")

    rp = sub.add_parser("run", help="execute chapters with papermill")
    rp.add_argument("chapters", nargs="*")
    run_opts(rp)
    bp = sub.add_parser("build", help="build the HTML from executed chapters")
    bp.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    ap = sub.add_parser("all", help="run chapters (every one by default), then build")
    ap.add_argument("chapters", nargs="*")
    run_opts(ap)
    ap.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    np_ = sub.add_parser("node", help="the GPU node job (see ntklit.node)")
    np_.add_argument("chapters", nargs="*", help="default: every chapter with a gpu: sentence")
    np_.add_argument("--out", type=Path, required=True, help="folder of the returned files")
    np_.add_argument(
        "--profile",
        default="full",
        choices=("full", "shape"),
        help="shape: the CPU dress rehearsal (full shapes, reduced counts)",
    )
    np_.add_argument(
        "--budget", type=float, default=None, help="seconds for the whole job (default 540)"
    )
    np_.add_argument(
        "--started",
        type=float,
        default=None,
        help="when the job started (epoch seconds; installation included)",
    )
    np_.add_argument(
        "--no-gpu-check",
        action="store_true",
        help="run without a GPU (the CPU rehearsal); the summary says so",
    )
    np_.add_argument("--no-compat-tests", action="store_true")
    np_.add_argument("--no-benchmarks", action="store_true")
    ip = sub.add_parser("ingest", help="bring a node job's records home")
    ip.add_argument("source", type=Path, help="the node's output folder, or a record / tarball")
    ip.add_argument(
        "--notebooks",
        action="store_true",
        help="also the executed notebooks, for `python -m ntklit build`",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        root = runner.find_root(args.root)
        paths = runner.BuildPaths.default(root, args.build_dir)
        if args.command == "list":
            for ch in runner.chapters(root):
                print(f"{ch.name}\t{runner._title(ch.path)}")
            return 0
        if args.command == "params":
            (ch,) = runner.select(root, [args.chapter])
            params = runner.read_parameters(ch.path)
            full = runner.load_profile(ch, "full")
            shape = dict(runner._profile_file(ch).get("shape") or {})
            print(f"chapter {ch.name}: {len(params)} parameters")
            for prm in params.values():
                extra = f"   [full: {full[prm.name]!r}]" if prm.name in full else ""
                extra += f"   [shape: {shape[prm.name]!r}]" if prm.name in shape else ""
                print(f"  {prm.describe()}{extra}")
            return 0
        if args.command in ("run", "all"):
            overrides = runner.parse_overrides(args.param)
            names = getattr(args, "chapters", [])
            runner.run_chapters(
                root,
                names,
                profile=args.profile,
                overrides=overrides,
                force=args.force,
                paths=paths,
                fail_fast=args.fail_fast,
                log_output=args.log_output,
                progress=not args.no_progress,
            )
        if args.command == "node":
            from . import node

            summary = node.run_node(
                root,
                args.out,
                args.chapters,
                profile=args.profile,
                budget_s=args.budget or node.DEFAULT_BUDGET_S,
                started=args.started,
                require_gpu=not args.no_gpu_check,
                compat_tests=not args.no_compat_tests,
                benchmarks=not args.no_benchmarks,
            )
            bad = [i for i in summary["items"] if i.get("status") == "failed"]
            return 1 if summary.get("stopped") or bad else 0
        if args.command == "ingest":
            from . import node

            for line in node.ingest(root, args.source, notebooks=args.notebooks, paths=paths):
                print(line)
            return 0
        if args.command in ("build", "all"):
            index = runner.build_html(root, paths=paths, strict=not args.no_strict)
            print(index)
        return 0
    except runner.ChapterFailed as e:
        print(f"error: {e}\nThe last good HTML is unchanged.", file=sys.stderr)
        return 1
    except runner.RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
