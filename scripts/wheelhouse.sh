#!/usr/bin/env bash
# The wheelhouse for an offline GPU node: downloads, for CPython 3.12 manylinux x86-64,
# exactly the wheels the node lacks (scripts/node-wheels.txt), --no-deps, one version of
# each, and writes DIR/MANIFEST.json (name, version, file, bytes, sha256; total). Never
# downloads jax, jaxlib or CUDA: the node's own are used. Run where PyPI is reachable.
# Usage: bash scripts/wheelhouse.sh DIR        (then carry DIR to the node: scripts/gpu_run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:?usage: bash scripts/wheelhouse.sh DIR}
PY=${PYTHON:-python3}
MAX_MIB=60
mkdir -p "$DIR"
mapfile -t pins < <(grep -Ev '^[[:space:]]*(#|$)' scripts/node-wheels.txt)
platforms=()
for t in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$t")
done
echo "[wheelhouse] downloading ${#pins[@]} wheels into $DIR"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  "${platforms[@]}" --platform any -d "$DIR" "${pins[@]}"
"$PY" scripts/wheelhouse_manifest.py "$DIR" scripts/node-wheels.txt --max-mib "$MAX_MIB"
