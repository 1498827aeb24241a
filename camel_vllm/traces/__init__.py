"""Request traces: loaders for the common public formats and the transforms benchmarks need.

:func:`load_trace` detects the format from the file (Azure CSV, BurstGPT CSV, Mooncake or
vLLM ``timed_trace`` JSONL) unless told, then applies window, request count, rate and
clipping, in that order.
"""

from __future__ import annotations

import os
from typing import Callable

from camel_vllm.traces import transforms
from camel_vllm.traces.azure import load_azure
from camel_vllm.traces.base import Trace, TraceFormatError, TraceRequest
from camel_vllm.traces.burstgpt import load_burstgpt
from camel_vllm.traces.mooncake import load_mooncake
from camel_vllm.traces.synthetic import alpaca_like
from camel_vllm.traces.timed_trace import load_timed_trace, write_timed_trace

__all__ = [
    "FORMATS", "Trace", "TraceFormatError", "TraceRequest", "alpaca_like", "detect_format",
    "load_trace", "write_timed_trace",
]

FORMATS: dict[str, Callable[[str], Trace]] = {
    "azure": load_azure,
    "burstgpt": load_burstgpt,
    "mooncake": load_mooncake,
    "timed_trace": load_timed_trace,
}

#: JSONL files whose name contains this are read as Mooncake (timestamps in ms); other
#: JSONL as vLLM's timed_trace (seconds). Pass the format explicitly to override.
_MOONCAKE_NAME_HINT = "mooncake"


def detect_format(path: str) -> str:
    """Guess the format from the first line (CSV header or JSON keys) and the file name."""
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline().strip()
    except OSError as err:
        raise TraceFormatError(path, None, f"cannot read: {err.strerror}") from None
    if first.startswith("TIMESTAMP"):
        return "azure"
    if first.startswith("Timestamp") or "Request tokens" in first:
        return "burstgpt"
    if first.startswith("{"):
        return "mooncake" if _MOONCAKE_NAME_HINT in os.path.basename(path).lower() else "timed_trace"
    raise TraceFormatError(path, 1, "unknown trace format (expected an Azure or BurstGPT CSV header, or JSONL); "
                           "pass the format explicitly")


def load_trace(
    path: str,
    fmt: str = "auto",
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    requests: int | None = None,
    target_rps: float | None = None,
    max_context_tokens: int | None = None,
    max_output_tokens: int | None = None,
) -> Trace:
    """Load ``path`` and apply, in order: window, first N, target rate, clipping."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise TraceFormatError(path, None, f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not os.path.isfile(path):
        raise TraceFormatError(path, None, "no such file")
    trace = FORMATS[fmt](path)
    if start_s > 0.0 or end_s is not None:
        trace = transforms.window(trace, start_s, end_s)
    if requests is not None:
        trace = transforms.first(trace, requests)
    if target_rps is not None:
        trace = transforms.target_rps(trace, target_rps)
    return transforms.clip_tokens(trace, max_context_tokens, max_output_tokens)

