#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (scripts/lint.sh: ruff and mypy) and run the whole test suite, the
# real vLLM CPU engine included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/lint.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
# Two workers (pytest-xdist; CAMEL_TEST_WORKERS to change, 0 for one process): most of the time
# goes to starting vLLM engines, whose imports and waits overlap well. A module whose tests share a
# module-scoped fixture is marked xdist_group and runs on one worker (--dist loadgroup).
workers=${CAMEL_TEST_WORKERS:-2}
# As many vLLM test servers side by side as workers (camel_vllm/testing/vllm_server.machine_lock).
export CAMEL_VLLM_SERVER_SLOTS=${CAMEL_VLLM_SERVER_SLOTS:-$(( workers > 1 ? workers : 1 ))}
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadgroup "$@"
