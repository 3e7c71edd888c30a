#!/usr/bin/env bash
# The whole test suite: set up the environment and the browser, then pytest (unit tests, every
# chapter executed with papermill in the quick profile, the book built with warnings as errors
# and checked, in headless Chromium too; the wheel built and used in a fresh venv).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k runner`.
# PYTHON=python3.13 picks the interpreter (and with it the JAX of requirements.txt), as for
# scripts/setup.sh; NTKLIT_VENV names the environment's folder (default .venv).
# Tests run in parallel with pytest-xdist, one worker per core (NTKLIT_TEST_WORKERS=N sets the
# count, 0 runs them in this process); the tests that share the built book run on one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh   # Debian's chromium for the browser tests (needs root or sudo)
exec "${NTKLIT_VENV:-.venv}/bin/python" -m pytest -n "${NTKLIT_TEST_WORKERS:-auto}" --dist loadgroup "$@"
