#!/usr/bin/env bash
# The GPU half of the book in one job on an offline GPU node (DESIGN.md section 8).
# Usage (in a copy of the repository on the node):
#   bash scripts/gpu_run.sh WHEELHOUSE OUTDIR [CHAPTER ...]
# Installs the wheelhouse (scripts/wheelhouse.sh) with --no-index --no-deps into a private
# target folder (never the node's site-packages), then `python -m ntklit node`: checks that JAX
# sees a GPU, runs tests/test_compat.py on the node's JAX (stops if it fails), runs the full
# profile of the GPU chapters within the budget (NTKLIT_NODE_BUDGET seconds for the whole job,
# default 540, installation included) and the GPU benchmarks, and writes at most 8 files to
# OUTDIR: summary.json, node.log, verified.tar.gz, notebooks.tar.gz, benchmarks.tar.gz.
# Bring them home with `python -m ntklit ingest OUTDIR`. NTKLIT_NODE_ARGS adds arguments to
# `python -m ntklit node` (the CPU rehearsal passes `--profile shape --no-gpu-check`).
set -uo pipefail
started=$(date +%s.%N)
cd "$(dirname "$0")/.."
WH=${1:?usage: bash scripts/gpu_run.sh WHEELHOUSE OUTDIR [CHAPTER ...]}
OUT=${2:?usage: bash scripts/gpu_run.sh WHEELHOUSE OUTDIR [CHAPTER ...]}
shift 2
PY=${PYTHON:-python3}
SITE=${NTKLIT_NODE_SITE:-$(mktemp -d /tmp/ntklit-site.XXXXXX)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/node.log") 2>&1
echo "[node] $(date -u +%FT%TZ) $("$PY" --version 2>&1), $(nproc) cores; wheelhouse $WH -> $SITE"
if ! "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
     --no-cache-dir --upgrade --target "$SITE" "$WH"/*.whl; then
  echo "[node] installing the wheelhouse failed: nothing was run"
  exit 2
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
export PYTHONUNBUFFERED=1
# shellcheck disable=SC2086
"$PY" -m ntklit node --out "$OUT" --started "$started" --budget "${NTKLIT_NODE_BUDGET:-540}" \
  ${NTKLIT_NODE_ARGS:-} "$@"
rc=$?
echo "[node] exit $rc, $(awk "BEGIN {printf \"%.0f\", $(date +%s.%N) - $started}") s in all"
exit $rc
