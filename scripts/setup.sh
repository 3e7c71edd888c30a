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
# pip's own output (progress, and warnings such as a machine's pip configuration naming missing
# index folders) goes to $VENV/pip.log; the console gets what is installed, and the log on a
# failure.
log=$VENV/pip.log
: > "$log"
pip_() {
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >>"$log" 2>&1; then
    echo "[setup] pip install $* failed; its output ($log):" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
}
count() { grep -cvE '^\s*(#|$)' "$1"; }
echo "[setup] installing into $VENV ($("$VENV/bin/python" --version)); pip's log: $log"
pip_ --upgrade pip
echo "[setup]   requirements.txt: $(count requirements.txt) pins (the JAX for this Python by its markers)"
pip_ -r requirements.txt
if [ -n "$JAX_OVERRIDE" ]; then
  echo "[setup]   NTKLIT_JAX=$JAX_OVERRIDE: replacing the locked JAX"
  pip_ "jax[cpu]==$JAX_OVERRIDE" "jaxlib==$JAX_OVERRIDE"
fi
echo "[setup]   requirements-nodeps.txt (--no-deps): $(grep -vE '^\s*(#|$)' requirements-nodeps.txt | tr '\n' ' ')"
pip_ --no-deps -r requirements-nodeps.txt
# The editable install writes ntklit.egg-info into this tree: two setups of one tree at once (CI
# sets up its two legs' environments together) take turns for it.
echo "[setup]   ntklit (editable, --no-deps)"
if command -v flock >/dev/null 2>&1; then
  exec {lockfd}>"${TMPDIR:-/tmp}/ntklit-setup.$(id -u).lock"
  flock "$lockfd"
  pip_ --no-deps -e .
  exec {lockfd}>&-
else
  pip_ --no-deps -e .
fi
echo "$want" > "$stamp"
echo "[setup] done: $("$VENV/bin/python" -c 'import jax, sys; print("Python", sys.version.split()[0], "jax", jax.__version__)')"
