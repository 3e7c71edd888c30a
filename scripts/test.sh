#!/usr/bin/env bash
# The whole test suite: set up .venv, then pytest (unit tests, every chapter executed with
# papermill in the quick profile, the book built with warnings as errors and checked).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k runner`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
