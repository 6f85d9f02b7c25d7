#!/usr/bin/env bash
# Ref-DAVIS17 (J&F, DAVIS-2017 unsupervised protocol over the 4 annotator settings)
#
#   bash scripts/eval_davis.sh CKPT RESULTS TOKENS [extra eval.rvos args...]
#   e.g. bash scripts/eval_davis.sh checkpoints/VideoGLaMM run/LiteLVLM/196 196
#
# Environment (DATASET_DIR, SPLIT, VISION_TOWER, VIDEO_TOWER, NPROC_PER_NODE, LAUNCHER, ...): see scripts/eval_rvos.sh.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/eval_rvos.sh" davis "$@"
