#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (scripts/lint.sh: ruff and mypy) and run the whole test suite, the
# real vLLM CPU engine included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/lint.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
