#!/usr/bin/env bash
# The main job: set up .venv, execute every chapter with papermill (quick profile when JAX sees
# no GPU, full profile when it does), build the HTML into _build/html, print index.html's path.
# Extra arguments go to the runner, e.g. `bash scripts/book.sh --profile quick --force`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m ntklit all "$@"
