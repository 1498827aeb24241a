"""Shared fixtures: the tiny model every real-engine test serves.

``tiny_model_dir`` builds ``models/tiny`` under the repository once (2 layers, hidden 128,
``camel-vllm make-tiny-model``) and reuses it afterwards; the build is atomic (temporary
folder, then rename) and serialised by a lock so parallel sessions never see half a model.
Real-engine tests start servers through :func:`camel_vllm.testing.vllm_server.start_server`.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL_DIR = REPO / "models" / "tiny"
MODEL_LOCK_PATH = "/tmp/camel-vllm-model.lock"
#: Files that make a complete model folder (written last: the weights).
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors")


def ensure_tiny_model(path: Path = TINY_MODEL_DIR) -> Path:
    """Build the default tiny model at ``path`` unless a complete one is there."""
    if all((path / name).exists() for name in MODEL_FILES):
        return path
    from camel_vllm.testing.tiny_model import build_tiny_model

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(MODEL_LOCK_PATH, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if all((path / name).exists() for name in MODEL_FILES):
            return path
        staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=path.parent))
        try:
            build_tiny_model(str(staging))
            if path.exists():
                shutil.rmtree(path)
            os.replace(staging, path)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Path of the tiny Llama model (built on first use)."""
    return ensure_tiny_model()


#: Words that mark a test module as one that starts vLLM engines (servers, the demo, vLLM's own
#: scheduler tests), then as one that runs vLLM's or camel-vllm's CLI in a new interpreter.
_ENGINE_WORDS = ("tiny_model_dir", "vllm_server", "vllm_conformance", "live_compare", "TINY")
_CLI_WORDS = ("import vllm", "from vllm", "venv", "subprocess")


@functools.lru_cache(maxsize=None)
def _weight(path: Path) -> int:
    """0: starts vLLM engines; 1: starts an interpreter; 2: the rest (read once per module)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return 0 if any(w in text for w in _ENGINE_WORDS) else 1 if any(w in text for w in _CLI_WORDS) else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that start vLLM engines first, then those that start a new interpreter, then the
    rest (a stable sort: order kept within each kind): the long ones start early and the short
    ones fill in, so with several xdist workers (scripts/test.sh) no long test runs alone at the end."""
    items.sort(key=lambda item: _weight(Path(str(item.path))))
