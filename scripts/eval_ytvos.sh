#!/usr/bin/env bash
# Ref-YouTube-VOS valid (no public GT: writes the upload zip RESULTS/submissions/*.zip)
#
#   bash scripts/eval_ytvos.sh CKPT RESULTS TOKENS [extra eval.rvos args...]
#   e.g. bash scripts/eval_ytvos.sh checkpoints/VideoGLaMM run/LiteLVLM/196 196
#
# Environment (DATASET_DIR, SPLIT, VISION_TOWER, VIDEO_TOWER, NPROC_PER_NODE, LAUNCHER, ...): see scripts/eval_rvos.sh.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/eval_rvos.sh" ytvos "$@"
