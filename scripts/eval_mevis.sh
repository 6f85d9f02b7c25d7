#!/usr/bin/env bash
# MeViS (valid_u: J&F per expression; SPLIT=valid: writes the upload zip)
#
#   bash scripts/eval_mevis.sh CKPT RESULTS TOKENS [extra eval.rvos args...]
#   e.g. bash scripts/eval_mevis.sh checkpoints/VideoGLaMM run/LiteLVLM/196 196
#
# Environment (DATASET_DIR, SPLIT, VISION_TOWER, VIDEO_TOWER, NPROC_PER_NODE, LAUNCHER, ...): see scripts/eval_rvos.sh.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/eval_rvos.sh" mevis "$@"
