#!/usr/bin/env bash
# GPU check of the PhysioLatent network (random weights, no downloads), under 8 minutes.
#
#   bash benchmarks/gpu_check.sh            # on a CUDA machine, from the repository root
#   bash benchmarks/gpu_check.sh --tiny     # the same code path on CPU with the tiny config
#
# Prints: the GPU, then for the full-size CogVideoX-2B VAE in bf16 on 256x256x49 face
# crops and on 480x720x49 frames, with and without spatial tiling: VAE encode, VAE
# decode and the whole edit (encode -> fuse -> FiLM decode), each with seconds, fps and
# peak VRAM; then one adapter training step (float32 adapter, bf16 frozen VAE,
# gradient-checkpointed decoder) on 256x256x49. See benchmarks/model_speed.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if [ "${1:-}" != "--tiny" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
echo "== PhysioLatent GPU check ($(date -u +%H:%M:%S) UTC) =="
# 450 s hard limit so the whole check stays under 8 minutes even if a stage hangs
timeout 450 "$PY" benchmarks/model_speed.py --suite gpu "$@"
echo "== done ($(date -u +%H:%M:%S) UTC) =="
