#!/usr/bin/env bash
# Create a virtual environment with everything litelvlm and its tests need, CPU torch pinned.
#   bash scripts/setup.sh [VENV_DIR]   (default .venv)
# Meta's sam2 (a test-only peer implementation) declares torchvision, whose only wheel is a CUDA
# build that pulls another torch: it is installed without its dependencies (its modeling code
# needs none beyond hydra-core/iopath, which come with the "test" extra).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q -c constraints.txt -e ".[test]"
SAM2_BUILD_CUDA=0 "$venv/bin/pip" install -q -c constraints.txt --no-deps --no-build-isolation "sam2==1.1.0"
"$venv/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), f'torch was replaced: {torch.__version__}'"
echo "litelvlm environment ready in $venv"
