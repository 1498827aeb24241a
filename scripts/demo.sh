#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the demo: vLLM serving the local tiny model, once with the
# default configuration (maximum frequency, maximum batch) and once with --scheduler camel, on
# the emulated Jetson AGX Orin 32GB, replaying the same slice of the real Azure conversation
# trace; prints energy, latency and EDP side by side. Energy figures are EMULATED.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
exec .venv/bin/python benchmarks/live_compare.py "$@"
