"""The chapter runner on a small generated book: parameters, profiles, caching, failures, build."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import _cli, _notebook, _text, _tree_digest

from ntklit import runner

# --------------------------------------------------------------------------- parameters


def test_read_parameters_types_defaults_docs(book):
    params = runner.read_parameters(book / "book" / "01_alpha.ipynb")
    assert list(params) == ["profile", "n", "scale", "widths", "fast"]
    assert params["widths"].type == "list[int]" and params["widths"].default == [1, 2]
    assert params["scale"].default == 0.5 and params["n"].doc == "a size"


@pytest.mark.parametrize(
    "src,match",
    [
        ("n = 3\n", "annotated"),
        ("n: dict = {}  # no\n", "allowed"),
        ("n: int = 'x'  # wrong\n", "must be of type int"),
        ("n: int = 3 + x  # not literal\n", "literal"),
    ],
)
def test_read_parameters_rejects_bad_cells(tmp_path, src, match):
    path = tmp_path / "bad.ipynb"
    nbformat.write(_notebook("Bad", src, []), path)
    with pytest.raises(runner.RunnerError, match=match):
        runner.read_parameters(path)


def test_exactly_one_parameters_cell_required(tmp_path):
    nb = _notebook("Two", "a: int = 1  # a\n", [])
    second = nbformat.v4.new_code_cell("b: int = 2  # b\n")
    second.metadata["tags"] = ["parameters"]
    nb.cells.append(second)
    nbformat.write(nb, tmp_path / "two.ipynb")
    with pytest.raises(runner.RunnerError, match="exactly one"):
        runner.read_parameters(tmp_path / "two.ipynb")


def test_parse_overrides_literals_and_bare_strings():
    assert runner.parse_overrides(["n=4", "widths=[8, 64]", "name=abc", "x=1e-3"]) == {
        "n": 4,
        "widths": [8, 64],
        "name": "abc",
        "x": 1e-3,
    }
    with pytest.raises(runner.ParameterError, match="name=value"):
        runner.parse_overrides(["novalue"])


def test_resolve_parameters_profiles_and_types(book):
    (ch,) = runner.select(book, ["01_alpha"])
    assert runner.resolve_parameters(ch, "quick", {}) == {"profile": "quick"}
    assert runner.resolve_parameters(ch, "full", {}) == {
        "profile": "full",
        "n": 7,
        "widths": [4, 8],
    }
    got = runner.resolve_parameters(ch, "full", {"n": 9, "scale": 2})
    assert got["n"] == 9 and got["scale"] == 2.0 and isinstance(got["scale"], float)
    with pytest.raises(runner.ParameterError, match=r"unknown parameter 'm'[\s\S]*n: int = 3"):
        runner.resolve_parameters(ch, "quick", {"m": 1})
    with pytest.raises(runner.ParameterError, match=r"must be of type list\[int\]"):
        runner.resolve_parameters(ch, "quick", {"widths": [1.5]})
    with pytest.raises(runner.ParameterError, match="must be of type bool"):
        runner.resolve_parameters(ch, "quick", {"fast": 1})
    with pytest.raises(runner.ParameterError, match="must be of type int"):
        runner.resolve_parameters(ch, "quick", {"n": True})


@pytest.mark.parametrize(
    "text, match",
    [
        ("fast:\n  n: 1\n", r"unknown key\(s\) \['fast'\]; allowed: quick, full, shape, gpu"),
        ("gpu: 3\nfull:\n  n: 1\n", "'gpu' must be a non-empty sentence"),
    ],
)
def test_profile_file_keys_are_checked(book, text, match):
    (book / "book" / "profiles" / "01_alpha.yaml").write_text(text)
    ch = runner.select(book, ["01_alpha"])[0]
    with pytest.raises(runner.RunnerError, match=match):
        runner.load_profile(ch, "full")


def test_profile_file_with_unknown_parameter_is_rejected(book):
    (book / "book" / "profiles" / "01_alpha.yaml").write_text("full:\n  depth: 3\n")
    (ch,) = runner.select(book, ["1"])
    with pytest.raises(runner.ParameterError, match="unknown parameter 'depth'"):
        runner.resolve_parameters(ch, "full", {})


def test_select_by_number_prefix_and_errors(book):
    assert [c.name for c in runner.select(book, [])] == ["01_alpha", "02_beta"]
    assert [c.name for c in runner.select(book, ["2", "01"])] == ["02_beta", "01_alpha"]
    assert [c.name for c in runner.select(book, ["02_b"])] == ["02_beta"]
    with pytest.raises(runner.RunnerError, match="matches no chapter.*01_alpha, 02_beta"):
        runner.select(book, ["09"])
    with pytest.raises(runner.RunnerError, match="ambiguous"):
        runner.select(book, ["0"])


# --------------------------------------------------------------------------- running


def test_bad_parameter_rejected_before_anything_runs(book):
    before = _tree_digest(book)
    res = _cli(book, "run", "-p", "nn=3")
    assert res.returncode == 2
    assert "unknown parameter 'nn'" in res.stderr and "widths: list[int]" in res.stderr
    res = _cli(book, "run", "01_alpha", "-p", "n=three")
    assert res.returncode == 2 and "must be of type int" in res.stderr
    assert not (book / "_build" / "executed").exists()
    assert _tree_digest(book) == before


def test_kernel_sockets_live_in_a_private_directory(tmp_path):
    """The kernels' IPC sockets go to a private absolute directory (never ``kernel-ipc-N`` in
    the chapter's working directory, jupyter_client's default); staging skips special files
    such as a killed kernel's leftover sockets instead of failing on them."""
    import socket
    import stat

    d = runner._ipc_dir()
    if d is None:
        pytest.skip("no Unix sockets here (TCP is used)")
    try:
        km = runner._kernel_manager_class(tmp_path / "k.log", d)()
        assert km.transport == "ipc" and km.ip == os.path.join(d, "kernel")
        assert os.path.isabs(km.ip) and len(km.ip) < runner._IPC_PATH_MAX
    finally:
        os.rmdir(d)
    assert runner._kernel_manager_class(tmp_path / "k.log")().transport == "tcp"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "page.md").write_text("x")
    (tmp_path / "src" / "__pycache__").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "src" / "kernel-ipc-1"))
        assert stat.S_ISSOCK(os.lstat(tmp_path / "src" / "kernel-ipc-1").st_mode)
        names = sorted(os.listdir(tmp_path / "src"))
        assert runner._stage_ignore(str(tmp_path / "src"), names) >= {
            "kernel-ipc-1",
            "__pycache__",
        }
        assert "page.md" not in runner._stage_ignore(str(tmp_path / "src"), names)
        shutil.copytree(tmp_path / "src", tmp_path / "dst", ignore=runner._stage_ignore)
        assert sorted(os.listdir(tmp_path / "dst")) == ["page.md"]
    finally:
        sock.close()


def test_run_cache_failure_and_build(book):
    # The performance page with the repository's results files: its figures build strictly.
    repo = Path(__file__).resolve().parent.parent
    (book / "benchmarks").mkdir()
    shutil.copytree(repo / "benchmarks" / "results", book / "benchmarks" / "results")
    (book / "_toc.yml").write_text(
        (book / "_toc.yml").read_text() + "  - file: book/performance\n"
    )
    (book / "book" / "performance.md").write_text("# Performance\n\nGenerated by the runner.\n")
    before = _tree_digest(book)
    res = _cli(book, "all", "--profile", "quick", "--no-progress")
    assert res.returncode == 0, res.stderr
    # The console shows the runner's lines only: the kernels talk over IPC, not TCP (no
    # ipykernel encryption warning), and the kernel process's own output goes to its log.
    assert "without encryption" not in res.stderr and "IPKernelApp" not in res.stderr, res.stderr
    assert all(
        line.startswith(("[1/2]", "[2/2]", "building HTML"))
        for line in res.stderr.strip().splitlines()
    ), res.stderr
    assert (book / "_build" / "records" / "01_alpha.kernel.log").is_file()
    index = Path(res.stdout.strip().splitlines()[-1])
    assert index == book / "_build" / "html" / "index.html" and index.is_file()
    html = book / "_build" / "html"
    for page in ("00_intro", "01_alpha", "02_beta", "reproducibility", "performance", "scorecard"):
        assert (html / "book" / f"{page}.html").is_file()
    # The scorecard: one row per check made with paper=..., linked to its section, the paper's
    # statement shown literally, the full-profile column saying there is no record.
    score = (html / "book" / "scorecard.html").read_text()
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", score, flags=re.S)[1:]
    assert len(rows) == 1, rows
    assert "Alpha et al. 2020, Eq. 1: n_* &lt; 100" in _text(rows[0])
    assert "n is below 100: n = 3" in _text(rows[0]) and "pass (quick)" in _text(rows[0])
    assert "not yet run at paper scale" in _text(rows[0]) and 'href="01_alpha.html#' in rows[0]
    perf = (html / "book" / "performance.html").read_text()
    figures = re.findall(r'<img[^>]+src="(\.\./_images/[^"]+\.png)"', perf)
    assert len(figures) >= 4 and all((html / "book" / f).is_file() for f in figures), figures
    assert "sd-dropdown" in perf and "Results table" in perf
    rec = json.loads((book / "_build" / "records" / "01_alpha.json").read_text())
    assert rec["status"] == "ok" and rec["profile"] == "quick"
    assert rec["parameters"]["widths"] == [1, 2] and rec["versions"]["jax"]
    assert rec["device"].startswith("cpu")
    repro = (html / "book" / "reproducibility.html").read_text()
    assert "01_alpha" in repro or "1. Alpha" in repro
    assert "quick" in repro and "widths" in repro
    # Every chapter page says how it was computed; a GPU note where the profile file has one.
    alpha = (html / "book" / "01_alpha.html").read_text()
    beta = (html / "book" / "02_beta.html").read_text()
    assert 'class="warning admonition"' in alpha and 'href="reproducibility.html"' in alpha
    assert "needs a GPU: it needs a GPU for test reasons." in _text(alpha)
    assert "python -m ntklit run 01_alpha --profile full" in _text(alpha)
    assert 'class="note admonition"' in beta and "needs a GPU" not in beta
    assert "computed with the quick profile on cpu" in _text(beta)
    assert "parameters: defaults" in _text(beta) and "parameters: defaults" in _text(alpha)
    # The page shows no console noise, no injected-parameters cell and no absolute path.
    assert "cwd book" in _text(beta) and str(book) not in beta
    assert "50%|" not in beta and "a warning for the console" not in beta
    assert "Parameters" not in _text(beta) and "injected" not in beta
    executed_beta = (book / "_build" / "executed" / "02_beta.ipynb").read_text()
    assert "a warning for the console" in executed_beta, "the executed copy keeps everything"
    assert _tree_digest(book) == before, "a run modified files outside _build"

    # Unchanged inputs: skipped. A changed parameter: re-run.
    res = _cli(book, "run", "--profile", "quick", "--no-progress")
    assert res.returncode == 0 and res.stderr.count("skipped") == 2
    res = _cli(book, "run", "01_alpha", "--profile", "quick", "-p", "n=4", "--no-progress")
    assert res.returncode == 0 and "skipped" not in res.stderr
    executed = json.loads((book / "_build" / "executed" / "01_alpha.ipynb").read_text())
    assert "alpha quick 4 0.5" in json.dumps(executed)

    # A failing chapter: non-zero exit naming chapter, cell and error; HTML and the last good
    # executed copy untouched.
    index_before = index.read_bytes()
    good_beta = (book / "_build" / "executed" / "02_beta.ipynb").read_bytes()
    res = _cli(book, "all", "--profile", "quick", "-p", "k=13", "02_beta", "--no-progress")
    assert res.returncode == 1
    assert "chapter 02_beta failed in code cell 3" in res.stderr  # numbered as in the source
    assert "AssertionError: unlucky k" in res.stderr
    assert (book / "_build" / "failed" / "02_beta.ipynb").is_file()
    assert (book / "_build" / "executed" / "02_beta.ipynb").read_bytes() == good_beta
    assert index.read_bytes() == index_before
    assert (html / "book" / "02_beta.html").is_file()


def test_build_fails_cleanly_and_keeps_last_html(book):
    res = _cli(book, "all", "--profile", "quick", "--no-progress")
    assert res.returncode == 0, res.stderr
    page = book / "_build" / "html" / "book" / "01_alpha.html"
    good = page.read_bytes()
    # A broken cross-reference must fail the (strict) build, leaving the old HTML.
    (book / "book" / "00_intro.md").write_text("# 0. Intro\n\nSee {ref}`no-such-label`.\n")
    res = _cli(book, "build")
    assert res.returncode == 2 and "no-such-label" in res.stderr
    assert page.read_bytes() == good


def test_params_and_list_commands(book):
    res = _cli(book, "params", "01_alpha")
    assert res.returncode == 0
    assert "widths: list[int] = [1, 2]  # widths   [full: [4, 8]]" in res.stdout
    res = _cli(book, "list")
    assert res.stdout.splitlines() == ["01_alpha\t1. Alpha", "02_beta\t2. Beta"]


# -------------------------------------------------------------------------- shape profile, records


def test_shape_profile_is_full_with_reduced_counts(book):
    (ch,) = runner.select(book, ["01_alpha"])
    assert runner.resolve_parameters(ch, "shape", {}) == {
        "profile": "shape",
        "n": 5,
        "widths": [4, 8],
    }
    prof = book / "book" / "profiles" / "01_alpha.yaml"
    prof.write_text("full:\n  n: 7\n  widths: [4, 8]\nshape:\n  n: 9\n")
    with pytest.raises(runner.ParameterError, match=r"shape value n=9 is not a reduced count"):
        runner.resolve_parameters(ch, "shape", {})
    prof.write_text("full:\n  n: 7\n  widths: [4, 8]\nshape:\n  widths: [4, 8, 16]\n")
    with pytest.raises(runner.ParameterError, match="not a reduced count"):
        runner.resolve_parameters(ch, "shape", {})
    prof.write_text("full:\n  n: 7\nshape:\n  fast: false\n")
    with pytest.raises(runner.ParameterError, match="not a reduced count"):
        runner.resolve_parameters(ch, "shape", {})
    prof.write_text("full:\n  n: 7\n")
    with pytest.raises(runner.RunnerError, match="has no shape profile: add a 'shape:'"):
        runner.resolve_parameters(ch, "shape", {})


def test_full_and_shape_runs_write_verification_records(book):
    before = _tree_digest(book)
    res = _cli(book, "run", "01_alpha", "--profile", "shape", "--no-progress")
    assert res.returncode == 0, res.stderr
    path = book / "book" / "verified" / "01_alpha.shape.json"
    rec = runner.load_verification(path)  # schema checked
    assert rec["profile"] == "shape" and rec["status"] == "ok"
    assert rec["parameters"]["n"] == 5 and rec["parameters"]["widths"] == [4, 8]
    assert [c["claim"] for c in rec["checks"]] == ["n is positive", "n is below 100"]
    assert rec["checks"][0]["detail"] == "n = 5" and rec["checks_passed"] == 2
    assert rec["peak_rss_mb"] > 50  # runner + kernel processes (each tens of MB at least)
    assert rec["device_peak_mb"] is None and rec["device"].startswith("cpu")
    (ch,) = runner.select(book, ["01_alpha"])
    assert runner.verification_state(ch, rec) == "verified"
    # The run record of the build holds the checks and the memory too.
    run = runner.RunRecord.load(book / "_build" / "records" / "01_alpha.json")
    assert len(run.checks) == 2 and run.kernel_peak_rss_mb > 20 and run.peak_rss_mb > 50
    # -p overrides: the run is not the profile, so no record is written or changed.
    mtime = path.stat().st_mtime_ns
    res = _cli(book, "run", "01_alpha", "--profile", "full", "-p", "n=6", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert not (book / "book" / "verified" / "01_alpha.full.json").exists()
    assert path.stat().st_mtime_ns == mtime
    # A failing full run is recorded as failed, with its cell and error.
    (book / "book" / "profiles" / "01_alpha.yaml").write_text(
        "gpu: it needs a GPU for test reasons.\nfull:\n  n: 700\n  widths: [4, 8]\n"
        "shape:\n  n: 5\n"
    )
    res = _cli(book, "run", "01_alpha", "--profile", "full", "--no-progress")
    assert res.returncode == 1 and "claim failed: n is below 100" in res.stderr
    full = runner.load_verification(book / "book" / "verified" / "01_alpha.full.json")
    assert full["status"] == "failed" and full["checks_passed"] == 1
    assert full["checks_total"] == 2 and full["error"]["cell"] == 4
    assert runner.verification_state(ch, full) == "failed"
    # The shape record is stale once the profile it ran changes.
    (book / "book" / "profiles" / "01_alpha.yaml").write_text(
        "full:\n  n: 7\n  widths: [4, 8]\nshape:\n  n: 4\n"
    )
    assert runner.verification_state(ch, rec) == "stale"
    rows = "\n".join(runner.status_table(book, runner.BuildPaths.default(book)))
    assert "stale (parameters changed since): 2/2 checks" in rows
    assert "FAILED (ClaimFailed in code cell 4): 1/2 checks" in rows
    assert "| never run at paper scale |" in rows  # 02_beta
    changed = {p for p in ("01_alpha.full.json", "01_alpha.shape.json")}
    assert {f.name for f in (book / "book" / "verified").iterdir()} == changed
    assert before != _tree_digest(book)  # records (and the edited profile) are the only changes


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.pop("checks"), "lacks the field 'checks'"),
        (lambda d: d.update(seconds="fast"), "field 'seconds' must be of type"),
        (lambda d: d.update(profile="quick"), "profile must be one of full, shape"),
        (lambda d: d.update(checks_passed=7), "checks_passed/checks_total do not match"),
        (lambda d: d["checks"].append({"claim": 1}), "every check is"),
    ],
)
def test_verification_schema_errors(tmp_path, edit, match):
    good = {
        "schema": 1,
        "chapter": "01_alpha",
        "title": "1. Alpha",
        "profile": "full",
        "status": "ok",
        "parameters": {},
        "device": "cpu",
        "versions": {},
        "started": "x",
        "finished": "y",
        "seconds": 1.0,
        "peak_rss_mb": 10.0,
        "device_peak_mb": None,
        "checks": [{"claim": "c", "passed": True, "detail": ""}],
        "checks_passed": 1,
        "checks_total": 1,
        "error": None,
        "notebook_sha256": "0",
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(good))
    assert runner.load_verification(path)["chapter"] == "01_alpha"
    edit(good)
    path.write_text(json.dumps(good))
    with pytest.raises(runner.RunnerError, match=match):
        runner.load_verification(path)


def test_publishable_hides_injected_cell_stderr_and_local_paths(tmp_path):
    root = tmp_path / "repo"
    nb = nbformat.v4.new_notebook()
    inj = nbformat.v4.new_code_cell("# Parameters\nn = 4\n")
    inj.metadata["tags"] = ["injected-parameters"]
    body = nbformat.v4.new_code_cell("run()")
    body.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="x:  10%|#   | 1/10 [00:01<00:09]"),
        nbformat.v4.new_output("stream", name="stdout", text=f"wrote {root}/book/out.json\n"),
        nbformat.v4.new_output("display_data", data={"text/markdown": f"see `{Path.home()}/x`"}),
    ]
    nb.cells = [inj, body]
    original = json.dumps(nb)
    page = runner.publishable(json.loads(original), root)
    assert json.dumps(nb) == original, "the input is not modified"
    assert "remove-cell" in page["cells"][0]["metadata"]["tags"]
    outs = page["cells"][1]["outputs"]
    assert [o["output_type"] for o in outs] == ["stream", "display_data"]
    assert outs[0]["text"] == "wrote book/out.json\n"
    assert outs[1]["data"]["text/markdown"] == "see `~/x`"


def test_performance_page_draws_every_benchmark_with_its_table_collapsed(tmp_path):
    """The performance page of the repository's results files: figures written into the
    staged book and referenced, every results table collapsed under its figures."""
    import re

    from ntklit import plotting

    repo = Path(__file__).resolve().parent.parent
    paths = runner.BuildPaths(root=repo, build=tmp_path / "_build")
    md = runner.performance_page(repo, paths)
    files = sorted((repo / "benchmarks" / "results").glob("*.json"))
    assert files
    want = sum(len(plotting.benchmark_figures(f.stem, json.loads(f.read_text()))) for f in files)
    shown = re.findall(r"```\{figure\} (\S+)", md)
    assert len(shown) == want >= len(files), (len(shown), want)
    for rel in shown:
        png = paths.stage / "book" / rel
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert md.count(":::{dropdown} Results table") == len(files)


def test_benchmark_plots_handle_partial_records():
    from ntklit import plotting

    rows = [
        {"method": "a", "N": 10, "wall_s": 1.0},
        {"method": "a", "N": 100, "wall_s": 10.0},
        {"method": "b", "N": 10, "wall_s": None},
        {"method": "b", "N": 100, "wall_s": 2.0, "status": "failed"},
    ]
    fig, ax = plotting.figure()
    assert plotting.series_loglog(ax, rows, "N", "wall_s", ("method",)) == 1
    xs, ys = ax.get_lines()[0].get_data()
    assert list(xs) == [10.0, 100.0] and list(ys) == [1.0, 10.0]
    assert plotting.benchmark_figures("unknown_cpu", {"results": rows}) == []


def test_check_records_paper_claim_and_rejects_an_empty_one():
    from ntklit import checks

    checks.reset()
    r = checks.check("x holds", True, "x = 1", paper="A et al. 2021: x")
    assert r.paper == "A et al. 2021: x" and r.cell is None  # outside IPython: no cell
    assert checks.check("y holds", True).paper is None
    with pytest.raises(ValueError, match="paper must be a non-empty statement"):
        checks.check("z holds", True, paper="  ")
    checks.reset()


def test_sections_map_cells_to_their_heading_ids():
    from ntklit import checks

    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "# 1. Title\n\nText"},
            {"cell_type": "code", "source": "a = 1"},
            {"cell_type": "markdown", "source": ["## The `q` map and $\\chi_1$\n"]},
            {"cell_type": "code", "source": ["b = 2\n", "c = 3"]},
            {"cell_type": "markdown", "source": "## Checks"},
            {"cell_type": "markdown", "source": "## Checks"},
            {"cell_type": "code", "source": "d = 4"},
        ]
    }
    sec = runner._sections(nb)
    assert sec[checks.cell_digest("a = 1")] == ("1. Title", "title")
    assert sec[checks.cell_digest("b = 2\nc = 3")][1] == "the-q-map-and-chi-1"
    assert sec[checks.cell_digest("d = 4")] == ("Checks", "id1")
