"""Shared fixtures: a small generated two-chapter book for the runner and node tests."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent

# XLA's CPU backend spends most of a unit test's time compiling, not computing (measured with
# jax.monitoring on tests/test_nets.py + test_empirical.py: 278 s of backend compilation in a
# 332 s run, 1,535 programs). LLVM optimization level 0 compiles them faster (229 s for the
# same run, all passing); the tests' arrays are tiny, so the slower code costs nothing. Set
# before JAX starts its backend, for this process and the processes the tests start. The
# chapters the tests execute in the quick profile run without it (``chapter_env``), exactly as
# a reader's do: their arrays are not tiny (chapter 8 is 9% slower at level 0).
# NTKLIT_TEST_XLA_OPT=1 keeps XLA's default optimization for the unit tests too.
TEST_XLA_FLAG = "--xla_backend_optimization_level=0"
if os.environ.get("NTKLIT_TEST_XLA_OPT") != "1" and TEST_XLA_FLAG not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAG}".strip()


def chapter_env() -> dict[str, str]:
    """The environment without the tests' XLA flag: for executing the real chapters."""
    env = dict(os.environ)
    flags = " ".join(f for f in env.get("XLA_FLAGS", "").split() if f != TEST_XLA_FLAG)
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    return env


def _notebook(title: str, params_src: str, body: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    p = nbformat.v4.new_code_cell(params_src)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\nText with $x^2$."),
        p,
        *[nbformat.v4.new_code_cell(s) for s in body],
    ]
    return nb


PARAMS = (
    'profile: str = "quick"  # parameter profile (set by the runner)\n'
    "n: int = 3  # a size\n"
    "scale: float = 0.5  # a scale\n"
    "widths: list[int] = [1, 2]  # widths\n"
    "fast: bool = True  # a flag\n"
)


def _tree_digest(root: Path) -> str:
    """Digest of every entry outside _build but directories (to prove a run modifies no source
    file and leaves nothing behind: sockets and other special files count by their names)."""
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_dir() or "_build" in f.relative_to(root).parts:
            continue
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes() if f.is_file() else b"<special file>")
    return h.hexdigest()


@pytest.fixture()
def book(tmp_path: Path) -> Path:
    """A two-chapter book using the repository's real _config.yml."""
    root = tmp_path / "mini"
    (root / "book" / "profiles").mkdir(parents=True)
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copy(REPO / "book" / "references.bib", root / "book" / "references.bib")
    shutil.copy(REPO / "book" / "reproducibility.md", root / "book" / "reproducibility.md")
    shutil.copytree(REPO / "book" / "_ext", root / "book" / "_ext")  # local Sphinx extensions
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/00_intro\nchapters:\n"
        "  - file: book/01_alpha\n  - file: book/02_beta\n  - file: book/reproducibility\n"
        "  - file: book/scorecard\n"
    )
    shutil.copy(REPO / "book" / "scorecard.md", root / "book" / "scorecard.md")
    (root / "book" / "00_intro.md").write_text("# 0. Intro\n\nMath $\\alpha$.\n")
    nbformat.write(
        _notebook(
            "1. Alpha",
            PARAMS,
            [
                "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                "plt.plot(widths)\nplt.show()\n",
                "assert n > 0\nprint('alpha', profile, n, scale, widths, fast)",
                "from IPython.display import Markdown, display\nfrom ntklit import checks\n"
                "checks.reset()\nchecks.check('n is positive', n > 0, f'n = {n}')\n"
                "checks.check('n is below 100', n < 100, f'n = {n}',\n"
                "             paper='Alpha et al. 2020, Eq. 1: n_* < 100')\n"
                "display(Markdown(checks.summary()))",
            ],
        ),
        root / "book" / "01_alpha.ipynb",
    )
    nbformat.write(
        _notebook(
            "2. Beta",
            'profile: str = "quick"  # profile\nk: int = 1  # k\n',
            [
                "print('beta', k)",
                "assert k != 13, 'unlucky k'",
                # console noise that must not reach the page (runner.publishable)
                "import os, sys, warnings\n"
                "sys.stderr.write('loop:  ' + str(5 * 10) + '%|## | 1/2\\n')\n"
                "warnings.warn('a warning ' + 'for the console')\n"
                "print('cwd', os.getcwd())",
            ],
        ),
        root / "book" / "02_beta.ipynb",
    )
    (root / "book" / "profiles" / "01_alpha.yaml").write_text(
        "gpu: it needs a GPU for test reasons.\nfull:\n  n: 7\n  widths: [4, 8]\nshape:\n  n: 5\n"
    )
    return root


def _text(html: str) -> str:
    """The text of an HTML page (tags removed)."""
    return re.sub(r"<[^>]+>", "", html)


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ntklit", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


# Fixtures that build one shared folder (``_build/test``: every chapter executed, the HTML book)
# are module-scoped in two files; under pytest-xdist (`scripts/test.sh` runs `-n auto --dist
# loadgroup`) the tests that use them must share one worker, or two workers would build the same
# folder at once.
SHARED_BUILD_FIXTURES = frozenset({"built_book", "built_html"})


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SHARED_BUILD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("book"))


def pytest_configure(config):
    """Under ``--dist loadgroup`` with a pytest on which xdist cannot group (9.2 and later with
    pytest-xdist 3.8, pytest-dev/pytest-xdist#1386), stop with a clear message."""
    if getattr(config.option, "dist", None) != "loadgroup" or hasattr(config, "workerinput"):
        return
    from importlib.metadata import version

    major_minor = tuple(int(v) for v in pytest.__version__.split(".")[:2])
    xdist = tuple(int(v) for v in version("pytest-xdist").split(".")[:2])
    if major_minor >= (9, 2) and xdist <= (3, 8):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with pytest-xdist {version('pytest-xdist')}: "
            "--dist loadgroup does not group tests (pytest-dev/pytest-xdist#1386), so two "
            "workers would build _build/test at once; install requirements.txt's pytest "
            "(9.1) or run with NTKLIT_TEST_WORKERS=0"
        )


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Refuse to run when xdist's grouping has no effect (the worker's node ids of grouped tests
    must end in ``@<group>``): two workers would build ``_build/test`` at once and corrupt it.
    Seen with pytest 9.2 (pytest-dev/pytest-xdist#1386)."""
    config = session.config
    if not (hasattr(config, "workerinput") and config.getvalue("loadgroup")):
        return
    lost = [
        i.nodeid
        for i in session.items
        if i.get_closest_marker("xdist_group") and "@" not in i.nodeid
    ]
    if lost:  # on a worker: the controller shows an INTERNALERROR; the message goes to stderr
        import sys

        sys.stderr.write(f"ntklit tests: {len(lost)} grouped tests lost their xdist group\n")
        raise pytest.UsageError(
            f"pytest-xdist --dist loadgroup did not group {len(lost)} tests (e.g. {lost[0]}) "
            f"with pytest {pytest.__version__}: install the pytest of requirements.txt, or run "
            "with NTKLIT_TEST_WORKERS=0"
        )
