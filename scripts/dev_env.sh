#!/usr/bin/env bash
# Creates (once) the project's virtual environment in .venv and installs what the
# demo and the tests need. Safe to run again: it only installs what is missing.
#
# torch: ComfyUI users already have it. For a fresh machine we install a CPU build;
# override with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.5.1") if your index differs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
# ray: the batch runner's optional engine, installed so its test runs (about 70 MB, no torch).
python -m pip install -q -r requirements.txt pytest "ray>=2.9"
