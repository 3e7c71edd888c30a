"""One formatter and linter setting for all Python of the repository: ruff (``[tool.ruff]`` in
pyproject.toml) over ntklit, tests, benchmarks, scripts, book/_ext and the chapters' code cells.

Fix a failure with ``python -m ruff format . && python -m ruff check --fix .`` (then by hand
what ruff cannot fix). The ruff version is the one pinned in requirements.txt: another version
may format differently.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Everything that is Python; each of these must be checked and formatted by the configuration.
PYTHON = (
    "ntklit/**/*.py",
    "tests/**/*.py",
    "benchmarks/**/*.py",
    "scripts/**/*.py",
    "book/_ext/**/*.py",
    "book/*.ipynb",
)


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _expected() -> list[str]:
    files = sorted({str(p.relative_to(REPO)) for g in PYTHON for p in REPO.glob(g)})
    assert any(f.endswith(".ipynb") for f in files) and "ntklit/__init__.py" in files
    return files


@pytest.fixture(scope="module")
def ruff_version() -> str:
    pinned = re.search(r"^ruff==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    assert pinned, "requirements.txt pins no ruff==VERSION"
    res = _ruff("--version")
    if res.returncode != 0:
        pytest.fail(
            f"ruff is not installed in {sys.executable}: "
            f"pip install ruff=={pinned[1]} (requirements.txt)\n{res.stderr}"
        )
    version = res.stdout.split()[-1]
    assert version == pinned[1], (
        f"ruff {version} is installed, requirements.txt pins "
        f"{pinned[1]} (other versions format differently)"
    )
    return version


def test_ruff_format(ruff_version):
    res = _ruff("format", "--check", "--diff", ".")
    assert res.returncode == 0, (
        "ruff format would change these files (run `python -m ruff format .`):\n"
        + res.stdout
        + res.stderr
    )


def test_ruff_check(ruff_version):
    res = _ruff("check", "--no-fix", "--output-format", "full", ".")
    assert res.returncode == 0, (
        "ruff check finds violations (`python -m ruff check --fix .` fixes some):\n"
        + res.stdout
        + res.stderr
    )


def test_ruff_checks_every_python_file_and_notebook(ruff_version):
    """A configuration change that silently drops the notebooks (or any Python) fails here."""
    res = _ruff("check", "--show-files", ".")
    assert res.returncode == 0, res.stdout + res.stderr
    shown = {
        str(Path(line.strip()).resolve().relative_to(REPO))
        for line in res.stdout.splitlines()
        if line.strip()
    }
    missing = [f for f in _expected() if f not in shown]
    assert not missing, f"ruff check skips {missing}"


def test_ruff_formats_every_python_file_and_notebook(ruff_version):
    """The formatter's own include/exclude: with --force-exclude an excluded file passed by
    name is skipped, so the count of checked files drops."""
    files = _expected()
    res = _ruff("format", "--check", "--force-exclude", *files)
    assert res.returncode == 0, res.stdout + res.stderr
    m = re.search(r"(\d+) files? already formatted", res.stdout + res.stderr)
    assert m and int(m[1]) == len(files), (
        f"ruff format checked {m[1] if m else 0} of the {len(files)} files:\n"
        + res.stdout
        + res.stderr
    )


@pytest.mark.parametrize("nb_path", sorted((REPO / "book").glob("*.ipynb")), ids=lambda p: p.stem)
def test_parameters_stay_one_line_each(nb_path):
    """ruff format wraps a parameter line longer than 99 columns: its comment then leaves the
    statement's first line and ``read_parameters`` (the runner's help) loses it. Shorten the
    comment instead (no ruff needed for this check)."""
    import ast
    import json

    from ntklit import runner

    cell = next(
        c
        for c in json.loads(nb_path.read_text())["cells"]
        if "parameters" in c["metadata"].get("tags", [])
    )
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    wrapped = [n.target.id for n in ast.parse(src).body if n.end_lineno != n.lineno]
    assert not wrapped, f"parameters spread over several lines: {wrapped}"
    undocumented = [p.name for p in runner.read_parameters(nb_path).values() if not p.doc]
    assert not undocumented, f"parameters without a comment: {undocumented}"
