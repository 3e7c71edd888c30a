"""The GPU-node path (ntklit.node, scripts/gpu_run.sh, scripts/wheelhouse_manifest.py) on the
pieces that are cheap to test here: budget shares and the plan, the wheelhouse manifest, the
offline install into a private target folder, the node job on a small book with the CPU
standing in for the GPU, packing, and ingest (round trip, stale, older and malformed records).
The whole path at the book's shapes is the dress rehearsal, ``scripts/rehearse_gpu.sh``."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, _cli

from ntklit import node, runner

_spec = importlib.util.spec_from_file_location(
    "wheelhouse_manifest", REPO / "scripts" / "wheelhouse_manifest.py"
)
wheelhouse_manifest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheelhouse_manifest)

BUDGET = "budget:\n  seconds: 30\n  estimate: the mini chapter runs in seconds\n"


def _share(name, seconds, kind="chapter"):
    return node.Share(name, seconds, "test", kind)


def test_plan_orders_chapters_by_share_and_drops_what_never_fits():
    shares = [
        _share("a", 200),
        _share("b", 50),
        _share("bench", 100, "benchmark"),
        _share("c", 400),
        _share("d", 100),
    ]
    planned, never = node.plan(shares, 540)
    assert [s.name for s in planned] == ["b", "d", "a", "bench"]
    assert [s.name for s in never] == ["c"]  # 50 + 100 + 200 + 400 > 540


@pytest.mark.parametrize(
    "budget, match",
    [
        ("budget: 30\n", "a budget is a mapping"),
        ("budget:\n  seconds: -1\n  estimate: x\n", "'seconds' must be a positive number"),
        ("budget:\n  seconds: 10\n", "'estimate' must say how the share was estimated"),
        ("budget:\n  seconds: 10\n  estimate: x\n  extra: 1\n", "a budget is a mapping"),
    ],
)
def test_budget_shares_are_checked(book, budget, match):
    (book / "book" / "profiles" / "01_alpha.yaml").write_text("full:\n  n: 7\n" + budget)
    (ch,) = runner.select(book, ["01_alpha"])
    with pytest.raises(runner.RunnerError, match=match):
        node.chapter_share(ch)


def test_gpu_chapter_without_budget_is_an_error_before_anything_runs(book, tmp_path):
    with pytest.raises(runner.RunnerError, match="a GPU chapter needs 'budget:"):
        node.run_node(book, tmp_path / "out", require_gpu=False, compat_tests=False)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_book_gpu_chapters_declared_shares_fit_the_node_job():
    """The GPU chapters of the real book that declare a budget share state how it was
    estimated, and the shares add up to at most 9 minutes (the node job's budget,
    installation included); the GPU benchmarks' file parses. (Chapters without a share make
    the node job stop before running anything: see the test above.)"""
    gpu = node.gpu_chapters(REPO)
    assert gpu, "no chapter has a gpu: sentence"
    shares = [node.chapter_share(ch) for ch in gpu if runner._profile_file(ch).get("budget")]
    assert sum(s.seconds for s in shares) <= node.DEFAULT_BUDGET_S, {
        s.name: s.seconds for s in shares
    }
    assert all(len(s.estimate) > 40 for s in shares)
    assert node.benchmark_shares(REPO)  # benchmarks/gpu.yaml parses, scripts exist


def _fake_wheel(folder: Path, name: str, version: str, payload: bytes = b"") -> Path:
    """A minimal valid pure-Python wheel whose package ``name`` sets ``VERSION``."""
    mod = name.replace("-", "_")
    whl = folder / f"{mod}-{version}-py3-none-any.whl"
    dist = f"{mod}-{version}.dist-info"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr(f"{mod}/__init__.py", f"VERSION = {version!r}\n# {payload!r}\n")
        z.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        z.writestr(
            f"{dist}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{dist}/RECORD", "")
    return whl


def test_wheelhouse_manifest_checks_the_listing(tmp_path):
    listing = tmp_path / "wheels.txt"
    listing.write_text("# comment\nalpha-pkg==1.0\nbeta==2.0  # why\n")
    want = wheelhouse_manifest.listing(listing)
    assert want == {"alpha-pkg": "1.0", "beta": "2.0"}
    wh = tmp_path / "wh"
    wh.mkdir()
    _fake_wheel(wh, "alpha-pkg", "1.0")
    with pytest.raises(ValueError, match="missing wheels: beta"):
        wheelhouse_manifest.manifest(wh, want)
    _fake_wheel(wh, "beta", "2.0")
    man = wheelhouse_manifest.manifest(wh, want)
    assert [w["name"] for w in man["wheels"]] == ["alpha-pkg", "beta"]
    assert man["total_bytes"] == sum(w["bytes"] for w in man["wheels"]) > 0
    assert all(len(w["sha256"]) == 64 for w in man["wheels"])
    with pytest.raises(ValueError, match="over the 0 MiB limit"):
        wheelhouse_manifest.manifest(wh, want, max_mib=1e-9)
    _fake_wheel(wh, "beta", "2.1")
    with pytest.raises(ValueError, match="two versions of beta"):
        wheelhouse_manifest.manifest(wh, want)
    (wh / "beta-2.1-py3-none-any.whl").unlink()
    _fake_wheel(wh, "jaxlib", "0.11.2")
    with pytest.raises(ValueError, match="node's own JAX and CUDA"):
        wheelhouse_manifest.manifest(wh, {**want, "jaxlib": "0.11.2"})
    (wh / "jaxlib-0.11.2-py3-none-any.whl").unlink()
    _fake_wheel(wh, "gamma", "1")
    with pytest.raises(ValueError, match="not in the listing"):
        wheelhouse_manifest.manifest(wh, want)
    with pytest.raises(ValueError, match="not pinned"):
        listing.write_text("alpha-pkg\n")
        wheelhouse_manifest.listing(listing)


def test_node_wheel_listing_excludes_the_nodes_own_packages():
    want = wheelhouse_manifest.listing(REPO / "scripts" / "node-wheels.txt")
    image = [
        line.split("==")[0].split("[")[0].strip().lower()
        for line in (REPO / "scripts" / "node-image.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not set(want) & set(image)
    assert not any(n.startswith(("jax", "nvidia")) for n in want)
    assert {"neural-tangents", "papermill", "ipykernel", "myst-nb", "frozendict"} <= set(want)
    assert want["neural-tangents"] == "0.6.5"


@pytest.fixture()
def node_book(book):
    """The mini book as a node gets it: a GPU chapter with a budget share, gpu_run.sh."""
    (book / "book" / "profiles" / "01_alpha.yaml").write_text(
        "gpu: it needs a GPU for test reasons.\nfull:\n  n: 7\n  widths: [4, 8]\n"
        "shape:\n  n: 5\n" + BUDGET
    )
    (book / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "gpu_run.sh", book / "scripts" / "gpu_run.sh")
    return book


def test_node_job_installs_offline_runs_packs_and_ingest_brings_records_home(node_book, tmp_path):
    wh = tmp_path / "wheelhouse"
    wh.mkdir()
    _fake_wheel(wh, "ntklit-node-probe", "1.0")
    site, out = tmp_path / "site", tmp_path / "out"
    home = tmp_path / "home"
    shutil.copytree(node_book, home, ignore=shutil.ignore_patterns("scripts"))
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "NTKLIT_NODE_SITE": str(site),
        "NTKLIT_NODE_ARGS": "--profile shape --no-gpu-check --no-compat-tests",
    }
    proc = subprocess.run(
        ["bash", str(node_book / "scripts" / "gpu_run.sh"), str(wh), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # installed into the private target folder, not into this interpreter's site-packages
    assert (site / "ntklit_node_probe" / "__init__.py").is_file()
    probe = subprocess.run([sys.executable, "-c", "import ntklit_node_probe"], capture_output=True)
    assert probe.returncode != 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["node.log", "notebooks.tar.gz", "summary.json", "verified.tar.gz"]
    assert len(files) <= node.MAX_FILES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gpu_check"].startswith("GPU check SKIPPED (CPU rehearsal)")
    (item,) = summary["items"]
    assert item["name"] == "01_alpha" and item["status"] == "ok" and item["checks"] == "2/2"
    log = (out / "node.log").read_text()
    assert "01_alpha: ok in" in log and "[node] exit 0" in log
    with tarfile.open(out / "notebooks.tar.gz") as tar:
        names = tar.getnames()
    assert "executed/01_alpha.ipynb" in names and "records/01_alpha.json" in names

    # home: ingest the returned records; the status table shows them
    lines = node.ingest(home, out, notebooks=True)
    assert lines[0].startswith("book/verified/01_alpha.shape.json: ok, 2/2 checks")
    assert (home / "_build" / "executed" / "01_alpha.ipynb").is_file()
    rec = runner.load_verification(home / "book" / "verified" / "01_alpha.shape.json")
    rows = "\n".join(runner.status_table(home, runner.BuildPaths.default(home)))
    assert "passed: 2/2 checks" in rows
    # the CLI does the same; an older record never replaces a newer one
    res = _cli(home, "ingest", str(out))
    assert res.returncode == 0, res.stderr
    newer = dict(rec, finished="2999-01-01T00:00:00+00:00")
    (home / "book" / "verified" / "01_alpha.shape.json").write_text(json.dumps(newer))
    with pytest.raises(node.IngestError, match="the record in place finished 2999"):
        node.ingest(home, out)
    res = _cli(home, "ingest", str(out))
    assert res.returncode == 2 and "rejected: the record in place finished" in res.stderr
    # a stale record (the profile changed since the run) is rejected, nothing written
    (home / "book" / "verified" / "01_alpha.shape.json").unlink()
    (home / "book" / "profiles" / "01_alpha.yaml").write_text(
        "full:\n  n: 7\n  widths: [4, 8]\nshape:\n  n: 4\n"
    )
    with pytest.raises(node.IngestError, match="rejected as stale"):
        node.ingest(home, out)
    assert not (home / "book" / "verified" / "01_alpha.shape.json").exists()
    # a malformed record is rejected with the field named
    bad = tmp_path / "01_alpha.shape.json"
    bad.write_text(json.dumps({k: v for k, v in rec.items() if k != "seconds"}))
    with pytest.raises(node.IngestError, match="lacks the field 'seconds'"):
        node.ingest(home, bad)
    with pytest.raises(node.IngestError, match="no verification records"):
        node.ingest(home, tmp_path / "wheelhouse")


def test_node_job_skips_what_does_not_fit_and_records_failures(node_book, tmp_path):
    (node_book / "book" / "profiles" / "02_beta.yaml").write_text(
        "gpu: beta needs one too.\nfull:\n  k: 13\nshape:\n  k: 13\n" + BUDGET
    )
    out = tmp_path / "out"
    summary = node.run_node(
        node_book, out, profile="shape", budget_s=45, require_gpu=False, compat_tests=False
    )
    # both shares are 30 s: the first in book order runs, the other never fits in 45 s
    assert [(i["name"], i["status"]) for i in summary["items"]] == [
        ("02_beta", "skipped"),
        ("01_alpha", "ok"),
    ]
    assert summary["items"][0]["why"] == "share exceeds the budget"
    summary = node.run_node(
        node_book,
        tmp_path / "out2",
        ["02_beta"],
        profile="shape",
        budget_s=45,
        require_gpu=False,
        compat_tests=False,
    )
    (item,) = summary["items"]
    assert item["status"] == "failed" and "AssertionError: unlucky k" in item["error"]
    assert (
        json.loads((tmp_path / "out2" / "summary.json").read_text())["items"][0]["status"]
        == "failed"
    )
    with pytest.raises(runner.RunnerError, match="sees no GPU"):
        node.run_node(node_book, tmp_path / "out3", profile="shape", compat_tests=False)
