#!/usr/bin/env bash
# Run a Python module with 1 process or several (torchrun or the deepspeed launcher); shared by the
# evaluation scripts. Usage: bash scripts/launch_module.sh MODULE [args...]
# Environment: NPROC_PER_NODE (default 1), LAUNCHER python | torchrun | deepspeed (default: python for
# 1 process, torchrun otherwise), TORCHRUN_ARGS (extra torchrun options, e.g. multi-node), MASTER_PORT
# (default 22999), PYTHON (default: the repository's .venv/bin/python made by scripts/setup.sh when it
# exists, else the python3 on PATH; a missing interpreter is named before anything runs).
set -euo pipefail
MODULE=$1
shift

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO_ROOT/.venv/bin/python" ]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "$0: python interpreter '$PYTHON' not found: run 'bash scripts/setup.sh' first or set PYTHON" >&2
    exit 2
fi
NPROC_PER_NODE=${NPROC_PER_NODE:-1}
MASTER_PORT=${MASTER_PORT:-22999}
if [ "$NPROC_PER_NODE" -gt 1 ]; then LAUNCHER=${LAUNCHER:-torchrun}; else LAUNCHER=${LAUNCHER:-python}; fi

case "$LAUNCHER" in
    python)
        exec "$PYTHON" -m "$MODULE" "$@" ;;
    torchrun)
        # shellcheck disable=SC2086
        exec "$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC_PER_NODE" --master_port "$MASTER_PORT" \
            ${TORCHRUN_ARGS:-} -m "$MODULE" "$@" ;;
    deepspeed)
        DEEPSPEED="$(dirname "$(command -v "$PYTHON")")/deepspeed"  # the launcher of the same environment
        [ -x "$DEEPSPEED" ] || DEEPSPEED=deepspeed
        exec "$DEEPSPEED" --num_gpus "$NPROC_PER_NODE" --master_port "$MASTER_PORT" --module "$MODULE" "$@" ;;
    *)
        echo "LAUNCHER must be python, torchrun or deepspeed, got '$LAUNCHER'" >&2
        exit 2 ;;
esac
