#!/usr/bin/env bash
# Evaluate all eight RefCOCO-family splits, then print the results table.
#
#   bash scripts/run_evaluation.sh CKPT RESULTS TOKENS [extra eval.refseg args...]
#   e.g. bash scripts/run_evaluation.sh checkpoints/GLaMM-RefSeg run/LiteLVLM/192 192
#
# Same environment variables as scripts/single_evaluation.sh (VISION_TOWER, DATASET_DIR, NPROC_PER_NODE,
# LAUNCHER, TORCHRUN_ARGS, MASTER_PORT, PYTHON). Every split appends one entry to RESULTS/stats.json.
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: bash $0 CKPT RESULTS TOKENS [extra args]" >&2
    exit 2
fi
CKPT_PATH=$1
RESULT_PATH=$2
RETAIN_TOKENS=$3
shift 3

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SPLITS=("refcoco|val" "refcoco|testA" "refcoco|testB"
        "refcoco+|val" "refcoco+|testA" "refcoco+|testB"
        "refcocog|val" "refcocog|test")

for DATA in "${SPLITS[@]}"; do
    bash "$HERE/single_evaluation.sh" "$CKPT_PATH" "$DATA" "$RESULT_PATH" "$RETAIN_TOKENS" "$@"
done

NPROC_PER_NODE=1 LAUNCHER=python bash "$HERE/launch_module.sh" eval.refseg --results_path "$RESULT_PATH" --show-stats
