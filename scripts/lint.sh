#!/usr/bin/env bash
# Lint (ruff, settings in ruff.toml) and type-check (mypy, settings in mypy.ini) with the
# set-up's virtual environment (scripts/setup.sh installs both, pinned). Says which one failed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/ruff check camel_vllm tests benchmarks; then
  echo "lint: ruff failed (ruff check camel_vllm tests benchmarks)" >&2
  exit 1
fi
if ! .venv/bin/mypy; then
  echo "lint: mypy failed (mypy, settings in mypy.ini)" >&2
  exit 1
fi
echo "lint: ok (ruff, mypy)"
