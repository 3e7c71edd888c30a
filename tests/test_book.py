"""The real book: committed notebooks are clean, every chapter executes in the quick profile
(papermill, through the runner), and the strict HTML build has every page, no error output and
every figure.

The chapters are executed once per session into ``_build/test`` (cached by the runner, so a
second test run only re-executes chapters whose inputs changed).
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import TEST_XLA_FLAG, chapter_env

from ntklit import runner

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "_build" / "test"
NOTEBOOKS = sorted((REPO / "book").glob("*.ipynb"))
TOC_DOCS = runner._toc_files(REPO)


# --------------------------------------------------------------------------- committed files


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(nb_path):
    nb = json.loads(nb_path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in code), "notebook has committed outputs"
    assert all(c.get("execution_count") is None for c in code), "execution counts committed"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged 'parameters' (want 1)"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    params = runner.read_parameters(nb_path)  # annotated literals only
    assert "profile" in params and params["profile"].default == "quick"
    first = nb["cells"][0]
    src = first["source"] if isinstance(first["source"], str) else "".join(first["source"])
    assert first["cell_type"] == "markdown" and re.match(r"# \d+\. ", src), (
        "a chapter starts with '# N. Title'"
    )


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_parses_every_parameter(nb_path):
    """papermill reads the same parameters as the runner (it cannot parse a line whose comment
    contains '=', and then shows no help for it)."""
    import papermill

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspected = papermill.inspect_notebook(str(nb_path))
    assert sorted(inspected) == sorted(runner.read_parameters(nb_path))


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_is_in_the_toc(nb_path):
    assert f"book/{nb_path.stem}" in TOC_DOCS, f"{nb_path.name} is not listed in _toc.yml"


def test_profiles_name_existing_parameters_with_right_types():
    for ch in runner.chapters(REPO):
        if ch.profile_file.is_file():
            resolved = runner.resolve_parameters(ch, "full", {})  # raises on a bad entry
            assert resolved["profile"] == "full"
    for f in (REPO / "book" / "profiles").glob("*.yaml"):
        assert (REPO / "book" / f"{f.stem}.ipynb").is_file(), f"{f.name} has no chapter"


VERIFIED = sorted((REPO / "book" / "verified").glob("*.json"))


@pytest.mark.parametrize("path", VERIFIED, ids=lambda p: p.stem)
def test_committed_verification_records_are_current(path):
    """Every committed record follows the schema, names a chapter and a recorded profile, and
    ran the chapter's current profile (same parameters): a record whose profile or defaults
    changed since would be shown as stale, so it must be re-run (or removed) with the change."""
    rec = runner.load_verification(path)
    (ch,) = runner.select(REPO, [rec["chapter"]])
    assert path.name == f"{ch.name}.{rec['profile']}.json"
    assert runner.verification_state(ch, rec) != "stale", (
        f"{path.name} is stale: re-run `python -m ntklit run {ch.name} --profile {rec['profile']}`"
    )


def test_chapters_run_without_the_unit_tests_xla_flag():
    """The unit tests' XLA optimization level 0 (tests/conftest.py) never reaches the chapters
    the tests execute: they run as a reader's do."""
    if os.environ.get("NTKLIT_TEST_XLA_OPT") != "1":
        assert TEST_XLA_FLAG in os.environ["XLA_FLAGS"].split()
    assert TEST_XLA_FLAG not in chapter_env().get("XLA_FLAGS", "").split()
    assert all(v == os.environ[k] for k, v in chapter_env().items() if k != "XLA_FLAGS")


def test_toc_entries_exist():
    for doc in TOC_DOCS:
        assert any((REPO / f"{doc}{s}").is_file() for s in (".md", ".ipynb")), doc


# --------------------------------------------------------------------------- executing + building


@pytest.fixture(scope="module")
def built_book() -> Path:
    """Run every chapter (quick profile) and build the HTML strictly, via the runner's CLI."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ntklit",
            "--root",
            str(REPO),
            "--build-dir",
            str(BUILD),
            "all",
            "--profile",
            "quick",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        env=chapter_env(),
    )
    sys.stderr.write(proc.stderr[-20000:])
    assert proc.returncode == 0, f"runner failed:\n{proc.stderr[-8000:]}"
    index = Path(proc.stdout.strip().splitlines()[-1])
    assert index == BUILD / "html" / "index.html" and index.is_file()
    return BUILD / "html"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", [c.name for c in runner.chapters(REPO)])
def test_chapter_executes_in_quick_profile(built_book, chapter):
    rec = runner.RunRecord.load(BUILD / "records" / f"{chapter}.json")
    assert rec.status == "ok" and rec.profile == "quick"
    executed = json.loads((BUILD / "executed" / f"{chapter}.ipynb").read_text())
    errors = [
        o
        for c in executed["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


class _Collect(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs: list[str] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        if a.get("class"):
            self.classes.append(a["class"])


@pytest.mark.slow
def test_every_toc_entry_has_a_page_without_errors(built_book):
    for doc in TOC_DOCS:
        page = built_book / f"{doc}.html"
        assert page.is_file(), f"no page for {doc}"
        text = page.read_text()
        assert "Traceback (most recent call last)" not in text, f"traceback in {doc}"
        p = _Collect()
        p.feed(text)
        bad = [c for c in p.classes if "traceback" in c.split() or "output error" in c]
        assert not bad, f"error output in {doc}: {bad[:3]}"
        for src in p.imgs:
            if src.startswith(("http:", "https:", "data:")):
                continue
            target = (page.parent / src.split("#")[0].split("?")[0]).resolve()
            assert target.is_file() and target.stat().st_size > 0, f"{doc}: missing {src}"


@pytest.mark.slow
def test_chapter_figures_were_rendered(built_book):
    """Every executed chapter that produced image outputs has them in its page."""
    for ch in runner.chapters(REPO):
        executed = json.loads((BUILD / "executed" / f"{ch.name}.ipynb").read_text())
        n_images = sum(
            1
            for c in executed["cells"]
            if c["cell_type"] == "code"
            for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})
        )
        p = _Collect()
        p.feed((built_book / f"{ch.docname}.html").read_text())
        local = [s for s in p.imgs if "_images/" in s]
        assert len(local) >= n_images, f"{ch.name}: {n_images} figures, {len(local)} images"


@pytest.mark.slow
def test_chapter_pages_say_how_they_were_computed(built_book):
    """Every chapter page carries the runner's note; a GPU note where the profile file says so."""
    for ch in runner.chapters(REPO):
        page = (built_book / f"{ch.docname}.html").read_text()
        text = " ".join(re.sub(r"<[^>]+>", "", page).split())
        gpu = runner._profile_file(ch).get("gpu")
        assert f"python -m ntklit run {ch.name} --profile full" in text, ch.name
        assert ('class="warning admonition"' in page) == bool(gpu), ch.name
        if gpu:
            assert "needs a GPU: " + " ".join(gpu.split())[:40] in text, ch.name


@pytest.mark.slow
def test_math_uses_local_mathjax_and_repro_page_lists_chapters(built_book):
    page = (built_book / "book" / "00_introduction.html").read_text()
    assert 'src="../_static/mathjax/tex-chtml.js"' in page
    assert "cdn.jsdelivr" not in page and "mathjax@3" not in page
    assert (built_book / "_static" / "mathjax" / "tex-chtml.js").is_file()
    repro = (built_book / "book" / "reproducibility.html").read_text()
    for ch in runner.chapters(REPO):
        rec = runner.RunRecord.load(BUILD / "records" / f"{ch.name}.json")
        assert rec.title in repro or ch.name in repro
    assert "jax" in repro and "neural-tangents" in repro
