#!/usr/bin/env bash
# Create (or update) the project's virtual environment and install everything pinned.
#   PYTHON=python3.13 bash scripts/setup.sh    # the interpreter (default: python3)
#   NTKLIT_VENV=.venv-py3.13 ...               # the environment's folder (default: .venv)
#   NTKLIT_JAX=0.11.2 ...                      # another tested JAX instead of the locked one
# requirements.txt gives each Python its JAX through environment markers (jax 0.10.2 on 3.11,
# the newest JAX on 3.12+). Idempotent: a second run with unchanged requirements and the same
# interpreter only checks the stamp and returns. An environment made by another Python
# (major.minor) than the one PYTHON names is recreated; without PYTHON the existing one is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${NTKLIT_VENV:-.venv}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "[setup] PYTHON=$PY is not an interpreter on this machine" >&2
  exit 1
fi
pyver() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
want_ver=$(pyver "$PY")
case "$want_ver" in
  3.11|3.12|3.13) ;;
  *) echo "[setup] $PY is Python $want_ver; ntklit supports Python 3.11-3.13" >&2; exit 1 ;;
esac
if [ -x "$VENV/bin/python" ] && [ -n "${PYTHON:-}" ] && [ "$(pyver "$VENV/bin/python")" != "$want_ver" ]; then
  echo "[setup] $VENV has Python $(pyver "$VENV/bin/python"), PYTHON=$PY is $want_ver: recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
stamp=$VENV/.ntklit-requirements
JAX_OVERRIDE=${NTKLIT_JAX:-}
want=$({ "$VENV/bin/python" --version; echo "jax=$JAX_OVERRIDE"; cat requirements.txt requirements-nodeps.txt pyproject.toml; } \
       | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] $VENV is up to date ($("$VENV/bin/python" --version)${JAX_OVERRIDE:+, jax $JAX_OVERRIDE})"
  exit 0
fi
echo "[setup] installing pinned requirements into $VENV ($("$VENV/bin/python" --version))"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
if [ -n "$JAX_OVERRIDE" ]; then
  echo "[setup] NTKLIT_JAX=$JAX_OVERRIDE: replacing the locked JAX"
  "$VENV/bin/python" -m pip install -q "jax[cpu]==$JAX_OVERRIDE" "jaxlib==$JAX_OVERRIDE"
fi
"$VENV/bin/python" -m pip install -q --no-deps -r requirements-nodeps.txt
# The editable install writes ntklit.egg-info into this tree: two setups of one tree at once (CI
# sets up its two legs' environments together) take turns for it.
lock=()
command -v flock >/dev/null 2>&1 && lock=(flock "${TMPDIR:-/tmp}/ntklit-setup.$(id -u).lock")
"${lock[@]}" "$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
echo "[setup] done: $("$VENV/bin/python" -c 'import jax, sys; print("Python", sys.version.split()[0], "jax", jax.__version__)')"
