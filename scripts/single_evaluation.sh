#!/usr/bin/env bash
# Evaluate one RefCOCO / RefCOCO+ / RefCOCOg split (cIoU / gIoU) with GLaMM + visual-token pruning.
#
#   bash scripts/single_evaluation.sh CKPT 'DATASET|SPLIT' RESULTS TOKENS [extra eval.refseg args...]
#   e.g. bash scripts/single_evaluation.sh checkpoints/GLaMM-RefSeg 'refcoco|val' run/LiteLVLM/192 192
#
# Environment:
#   VISION_TOWER    local CLIP ViT-L/14-336 folder (default: openai/clip-vit-large-patch14-336, a local path)
#   DATASET_DIR     folder holding Refer_Segm/ (default: ./data)
#   NPROC_PER_NODE  processes (GPUs) on this node (default: 1)
#   LAUNCHER        python | torchrun | deepspeed (default: python for 1 process, torchrun otherwise)
#   TORCHRUN_ARGS   extra torchrun options for multi-node runs (e.g. "--nnodes 2 --node_rank 0 --master_addr HOST")
#   MASTER_PORT     rendezvous port (default: 22999)
#   PYTHON          interpreter (default: .venv/bin/python from scripts/setup.sh if present, else python3)
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: bash $0 CKPT 'DATASET|SPLIT' RESULTS TOKENS [extra args]" >&2
    exit 2
fi
CKPT_PATH=$1
REF_SEG_DATASET=$2
RESULT_PATH=$3
RETAIN_TOKENS=$4
shift 4

ARGS=(--version "$CKPT_PATH" --refer_seg_data "$REF_SEG_DATASET" --results_path "$RESULT_PATH"
      --num_retain_tokens "$RETAIN_TOKENS"
      --vision-tower "${VISION_TOWER:-openai/clip-vit-large-patch14-336}" --dataset_dir "${DATASET_DIR:-./data}")

exec bash "$(dirname "${BASH_SOURCE[0]}")/launch_module.sh" eval.refseg "${ARGS[@]}" "$@"
