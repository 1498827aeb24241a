"""Mooncake traces (Qin et al., FAST 2025): JSONL, ``timestamp`` in milliseconds.

Keys: ``timestamp``, ``input_length``, ``output_length``, ``hash_ids`` (512-token blocks).
"""

from __future__ import annotations

from camel_vllm.traces.base import Trace
from camel_vllm.traces.jsonl import load_jsonl

#: Mooncake's timestamps are milliseconds (its README and FAST'25 artifact).
MOONCAKE_SECONDS_PER_UNIT = 1e-3


def load_mooncake(path: str) -> Trace:
    return load_jsonl(path, seconds_per_unit=MOONCAKE_SECONDS_PER_UNIT)
