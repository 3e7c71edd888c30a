#!/usr/bin/env bash
# Dress rehearsal of the GPU-node path on the CPU (DESIGN.md section 8), from a fresh clone:
#   1. a Python 3.12 virtual environment .venv-node with the node's JAX (jax[cpu]==0.11.2) and a
#      stand-in for the node's other packages (scripts/node-image.txt), nothing of this project;
#   2. the wheelhouse (scripts/wheelhouse.sh) in .wheelhouse;
#   3. a copy of the repository (git's tracked files) in a temporary folder, as the node gets it;
#   4. there, the node command exactly as on the node (scripts/gpu_run.sh: offline install of the
#      wheelhouse into a private folder, compat tests, the GPU chapters, benchmarks, packing),
#      in the shape profile (full shapes, reduced counts) with the CPU standing in for the GPU
#      (the GPU check is skipped and the summary says so), with a budget for the CPU
#      (NTKLIT_REHEARSAL_BUDGET seconds, default 5400) instead of the node's 540.
# Usage: bash scripts/rehearse_gpu.sh OUTDIR [CHAPTER ...]
# Then `python -m ntklit ingest OUTDIR` brings the records home, as after a node run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:?usage: bash scripts/rehearse_gpu.sh OUTDIR [CHAPTER ...]}")
shift
find_py312() {
  for c in "${PYTHON312:-}" python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python" \
           "$HOME"/.pyenv/versions/3.12.*/bin/python; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo "$c"; return; }
  done
  return 1
}
PY312=$(find_py312) || { echo "[rehearsal] no Python 3.12 found (set PYTHON312=...)" >&2; exit 2; }
VENV=.venv-node
stamp=$VENV/.ntklit-node-image
want=$(sha256sum scripts/node-image.txt | cut -d' ' -f1)
if [ ! -x $VENV/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[rehearsal] creating $VENV with $($PY312 --version) and scripts/node-image.txt"
  rm -rf $VENV
  "$PY312" -m venv $VENV
  $VENV/bin/python -m pip install -q --disable-pip-version-check -r scripts/node-image.txt
  echo "$want" > "$stamp"
fi
WH=.wheelhouse
if ! $VENV/bin/python scripts/wheelhouse_manifest.py $WH scripts/node-wheels.txt >/dev/null 2>&1; then
  rm -rf $WH
  PYTHON=$VENV/bin/python bash scripts/wheelhouse.sh $WH
fi
NODE=$(mktemp -d /tmp/ntklit-node.XXXXXX)
git ls-files -z | xargs -0 -I{} cp --parents {} "$NODE"/
cp -r $WH "$NODE/wheelhouse"
echo "[rehearsal] repository copy in $NODE; node command with $($VENV/bin/python --version) on the CPU"
rm -rf "$OUT"
rc=0
PYTHON="$(realpath $VENV/bin/python)" NTKLIT_NODE_SITE="$NODE/site" \
  NTKLIT_NODE_BUDGET="${NTKLIT_REHEARSAL_BUDGET:-5400}" \
  NTKLIT_NODE_ARGS="--profile shape --no-gpu-check" \
  bash "$NODE/scripts/gpu_run.sh" "$NODE/wheelhouse" "$OUT" "$@" || rc=$?
echo "[rehearsal] node command exit $rc; returned files:"
ls -la "$OUT"
exit $rc
