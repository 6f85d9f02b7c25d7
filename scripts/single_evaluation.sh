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
#   PYTHON          interpreter (default: python)
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

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python}
NPROC_PER_NODE=${NPROC_PER_NODE:-1}
MASTER_PORT=${MASTER_PORT:-22999}
if [ "$NPROC_PER_NODE" -gt 1 ]; then LAUNCHER=${LAUNCHER:-torchrun}; else LAUNCHER=${LAUNCHER:-python}; fi

ARGS=(--version "$CKPT_PATH" --refer_seg_data "$REF_SEG_DATASET" --results_path "$RESULT_PATH"
      --num_retain_tokens "$RETAIN_TOKENS"
      --vision-tower "${VISION_TOWER:-openai/clip-vit-large-patch14-336}" --dataset_dir "${DATASET_DIR:-./data}")

case "$LAUNCHER" in
    python)
        exec "$PYTHON" -m eval.refseg "${ARGS[@]}" "$@" ;;
    torchrun)
        # shellcheck disable=SC2086
        exec "$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC_PER_NODE" --master_port "$MASTER_PORT" \
            ${TORCHRUN_ARGS:-} -m eval.refseg "${ARGS[@]}" "$@" ;;
    deepspeed)
        exec deepspeed --num_gpus "$NPROC_PER_NODE" --master_port "$MASTER_PORT" --module eval.refseg \
            "${ARGS[@]}" "$@" ;;
    *)
        echo "LAUNCHER must be python, torchrun or deepspeed, got '$LAUNCHER'" >&2
        exit 2 ;;
esac
