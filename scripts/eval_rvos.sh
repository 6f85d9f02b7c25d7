#!/usr/bin/env bash
# Evaluate VideoGLaMM (+ visual-token pruning) on one referring-video benchmark; called by the per-benchmark
# wrappers scripts/eval_davis.sh, scripts/eval_ytvos.sh and scripts/eval_mevis.sh.
#
#   bash scripts/eval_rvos.sh BENCHMARK CKPT RESULTS TOKENS [extra eval.rvos args...]
#   e.g. bash scripts/eval_rvos.sh davis checkpoints/VideoGLaMM run/LiteLVLM/196 196
#
# Environment:
#   DATASET_DIR     the benchmark's root folder (default: ./data/<benchmark default below>)
#   SPLIT           split folder (default: valid; valid_u for MeViS)
#   VISION_TOWER    local CLIP ViT-L/14-336 folder (default: openai/clip-vit-large-patch14-336, a local path)
#   VIDEO_TOWER     InternVideo2-Stage2 1B .pt file (default: the copy inside the VideoGLaMM checkpoint)
#   NPROC_PER_NODE  processes (GPUs) on this node (default: 1)
#   LAUNCHER        python | torchrun | deepspeed (default: python for 1 process, torchrun otherwise)
#   TORCHRUN_ARGS   extra torchrun options for multi-node runs (e.g. "--nnodes 2 --node_rank 0 --master_addr HOST")
#   MASTER_PORT     rendezvous port (default: 23999)
#   PYTHON          interpreter (default: .venv/bin/python from scripts/setup.sh if present, else python3)
# RESULTS/stats.json gets one entry per run; masks go to RESULTS/predictions/, upload zips to RESULTS/submissions/.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: bash scripts/eval_{davis,ytvos,mevis}.sh CKPT RESULTS TOKENS [extra args]" \
         "(or bash $0 BENCHMARK CKPT RESULTS TOKENS [extra args])" >&2
    exit 2
fi
BENCHMARK=$1
CKPT_PATH=$2
RESULT_PATH=$3
RETAIN_TOKENS=$4
shift 4

case "$BENCHMARK" in
    davis) DEFAULT_DATA=./data/ref_davis ;;
    ytvos) DEFAULT_DATA=./data/ref_youtube_vos ;;
    mevis) DEFAULT_DATA=./data/mevis ;;
    *) echo "BENCHMARK must be davis, ytvos or mevis, got '$BENCHMARK'" >&2; exit 2 ;;
esac

export MASTER_PORT=${MASTER_PORT:-23999}

ARGS=(--benchmark "$BENCHMARK" --version "$CKPT_PATH" --results_path "$RESULT_PATH"
      --num_retain_tokens "$RETAIN_TOKENS" --dataset_dir "${DATASET_DIR:-$DEFAULT_DATA}"
      --vision-tower "${VISION_TOWER:-openai/clip-vit-large-patch14-336}")
if [ -n "${VIDEO_TOWER:-}" ]; then ARGS+=(--video-tower "$VIDEO_TOWER"); fi
if [ -n "${SPLIT:-}" ]; then ARGS+=(--split "$SPLIT"); fi

exec bash "$(dirname "${BASH_SOURCE[0]}")/launch_module.sh" eval.rvos "${ARGS[@]}" "$@"
