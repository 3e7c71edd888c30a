"""ntklit as a package: the wheel installs into a fresh virtual environment outside the
repository with the dependencies that ``pyproject.toml`` declares (plus neural-tangents
``--no-deps``), and works there.

Slow (a virtual environment and about 15 packages; pip reuses its cache and the project's
index, so about a minute when the wheels are cached): marked ``slow``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# What the fresh environment runs: an analytic kernel (neural-tangents' kernel_fn through
# ntklit.kernels, against ntklit's own numpy recursion), an empirical NTK (all four
# neural-tangents implementations through ntklit.empirical) and an orthogonal initialization.
SCRIPT = r"""
import sys
import ntklit
from pathlib import Path
assert Path(ntklit.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), ntklit.__file__
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
from ntklit import compat, empirical, init, kernels, nets
x = np.random.default_rng(0).normal(size=(4, 3))
nngp, ntk = kernels.infinite_width_kernels(x, depth=2, W_std=1.4, b_std=0.1)
nngp_np, ntk_np = kernels.fcn_kernels(x, depth=2, W_std=1.4, b_std=0.1)
assert np.max(np.abs(ntk - ntk_np)) < 1e-8 * np.max(np.abs(ntk_np)), "analytic NTK"
init_fn, apply_fn, _ = nets.fcn(2, 16, W_std=1.4, b_std=0.1, init="orthogonal")
_, params = init_fn(jax.random.key(1), x.shape)
w = np.asarray(params[2][0])  # the 16 x 16 hidden weight (params[1]: the ReLU): W^T W = 16 I
assert np.allclose(w.T @ w, 16 * np.eye(16), atol=1e-10), "orthogonal init"
q = np.asarray(init.orthogonal(jax.random.key(2), (3, 5), jax.numpy.float64))
assert np.allclose(q @ q.T, 5 * np.eye(3), atol=1e-10)
ks = [empirical.ntk(apply_fn, params, x, implementation=i) for i in (1, 2, 3)]
for k in ks[1:]:
    assert np.max(np.abs(k - ks[0])) < 1e-12 * np.max(np.abs(ks[0])), "empirical NTK"
print("ok", jax.__version__, len(compat.applied()), "patches applied")
"""


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, f"{cmd}:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out


def _constraints(tmp: Path) -> Path:
    """requirements.txt as pip constraints (no extras), so the fresh environment resolves
    to the locked versions, which pip has cached from scripts/setup.sh."""
    lines = [
        re.sub(r"^([A-Za-z0-9_.-]+)\[[^\]]*\]", r"\1", ln)
        for ln in (REPO / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    path = tmp / "constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the package's sources (the repository is untouched),
    with this environment's setuptools (no build isolation: nothing to download)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "ntklit", src / "ntklit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    dist = tmp_path_factory.mktemp("dist")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            dist,
            src,
        ]
    )
    (whl,) = dist.glob("ntklit-*.whl")
    return whl


def test_wheel_metadata(wheel):
    import zipfile

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (mpath,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = zf.read(mpath).decode()
    assert "ntklit/compat.py" in names and "ntklit/__main__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "book/"))]
    from packaging.requirements import Requirement

    requires = re.findall(r"^Requires-Dist: (.+)$", text, re.M)
    parsed = [Requirement(r) for r in requires]
    for dep in map(Requirement, meta["dependencies"]):  # same name and range, no marker
        assert any(
            r.name == dep.name and r.specifier == dep.specifier and r.marker is None
            for r in parsed
        ), dep
    assert not any("neural-tangents" in r or "tensorflow" in r for r in requires)
    assert any("extra ==" in r and "book" in r and "papermill" in r for r in requires)
    for name in (
        "jax",
        "numpy",
        "scipy",
        "sympy",
        "matplotlib",
        "optax",
        "scikit-learn",
        "mnist1d",
        "frozendict",
        "tqdm",
        "psutil",
    ):
        assert any(re.match(rf"{re.escape(name)}\b", d) for d in meta["dependencies"]), name


def test_wheel_in_fresh_venv(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", env_dir])
    py = env_dir / "bin" / "python"
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "-c", _constraints(tmp_path), wheel], env=env, cwd=tmp_path)
    # without neural-tangents: the ImportError names the one command that installs it
    out = subprocess.run(
        [py, "-c", "import ntklit"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "pip install --no-deps neural-tangents==0.6.5" in out.stderr
    nt_pin = next(
        ln
        for ln in (REPO / "requirements-nodeps.txt").read_text().splitlines()
        if ln.startswith("neural-tangents")
    )
    _run([*pip, "--no-deps", nt_pin], env=env, cwd=tmp_path)
    out = _run([py, "-c", SCRIPT], env=env, cwd=tmp_path)
    assert out.stdout.startswith("ok "), out.stdout
    # tensorflow was never installed
    listed = _run([py, "-m", "pip", "list", "--format=freeze"], env=env, cwd=tmp_path).stdout
    assert "tensorflow" not in listed.lower()
    assert re.search(r"^ntklit==0\.1\.0$", listed, re.M)
