"""vLLM's ``timed_trace`` JSONL, as read by ``vllm bench serve --dataset-name timed_trace``.

Format (vllm/benchmarks/datasets/datasets.py, class ``TimedTrace``, vLLM 0.32): one JSON
object a line with ``timestamp`` (seconds by default: vLLM multiplies by
``--timed-trace-sec-multiplier``, default 1, and sleeps until ``start + timestamp``),
``input_length``, ``output_length`` and ``hash_ids``. vLLM builds each prompt from
``hash_ids``: every id expands to ``--timed-trace-chunk-hash-size`` (default 16) tokens and
it stops at ``input_length``, so a request with too few ids gets a SHORTER prompt (none:
an empty prompt). :func:`write_timed_trace` therefore writes ceil(input_length / 16)
distinct ids per request (distinct across requests: no accidental prefix-cache hits).
"""

from __future__ import annotations

import json
import math

from camel_vllm.traces.base import Trace
from camel_vllm.traces.jsonl import load_jsonl

#: vLLM's default ``--timed-trace-chunk-hash-size``.
VLLM_CHUNK_HASH_SIZE = 16


def load_timed_trace(path: str) -> Trace:
    return load_jsonl(path, seconds_per_unit=1.0)


def write_timed_trace(trace: Trace, path: str, *, chunk_size: int = VLLM_CHUNK_HASH_SIZE) -> int:
    """Write ``trace`` for ``vllm bench serve --dataset-name timed_trace``; returns rows written."""
    next_id = 0
    with open(path, "w", encoding="utf-8") as fh:
        for req in trace.requests:
            n_ids = math.ceil(req.prompt_tokens / chunk_size)
            ids = list(range(next_id, next_id + n_ids))
            next_id += n_ids
            fh.write(json.dumps({
                "timestamp": round(req.arrival_s, 6),
                "input_length": req.prompt_tokens,
                "output_length": req.output_tokens,
                "hash_ids": ids,
            }) + "\n")
    return len(trace.requests)
