"""vLLM 0.33.0's source for the tests that read it (fetched once from PyPI, sha256-pinned:
:mod:`camel_vllm.testing.vllm_source`). CI has registry access: a fetch that fails is a failed
test with one line, never a skip that would hide a check."""

from __future__ import annotations

from pathlib import Path

import pytest

from camel_vllm.testing.vllm_source import SourceFetchError, vllm_033_source


@pytest.fixture(scope="session")
def vllm_033_src() -> Path:
    """The ``vllm/`` folder of vLLM 0.33.0's source (``$CAMEL_VLLM_033_SRC`` if set)."""
    try:
        return vllm_033_source()
    except SourceFetchError as err:
        pytest.fail(str(err), pytrace=False)
