"""Request traces: loaders for the common public formats and the transforms benchmarks need.

:func:`load_trace` detects the format from the file (Azure CSV, BurstGPT CSV, Mooncake or
vLLM ``timed_trace`` JSONL) unless told, then applies window, request count, rate and
clipping, in that order.
"""

from __future__ import annotations

import csv
import os
from typing import Callable

from camel_vllm.core.paths import file_problem
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


def _check_regular_file(path: str) -> None:
    """A missing path, a folder or a FIFO/device (whose read could block forever) is refused."""
    problem = file_problem(path)
    if problem:
        raise TraceFormatError(path, None, problem)


def _not_text(path: str, err: UnicodeDecodeError) -> TraceFormatError:
    """The line of the first byte that is not UTF-8, read again from the file's bytes."""
    line: int | None = None
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        raw.decode("utf-8")
    except UnicodeDecodeError as whole:
        line = raw.count(b"\n", 0, whole.start) + 1
        bad = raw[whole.start:whole.start + 1]
        return TraceFormatError(path, line, f"not a UTF-8 text file (byte 0x{bad.hex()} at offset {whole.start})")
    except OSError:
        pass
    return TraceFormatError(path, line, f"not a UTF-8 text file ({err.reason})")


def detect_format(path: str) -> str:
    """Guess the format from the first line (CSV header or JSON keys) and the file name."""
    _check_regular_file(path)
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline().strip()
    except OSError as err:
        raise TraceFormatError(path, None, f"cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise _not_text(path, err) from err
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
    _check_regular_file(path)
    try:
        trace = FORMATS[fmt](path)
    except OSError as err:
        raise TraceFormatError(path, None, f"cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise _not_text(path, err) from err
    except csv.Error as err:  # e.g. a NUL byte in a CSV
        raise TraceFormatError(path, None, f"not a valid CSV file ({err})") from err
    if start_s != 0.0 or end_s is not None:
        trace = transforms.window(trace, start_s, end_s)
    if requests is not None:
        trace = transforms.first(trace, requests)
    if target_rps is not None:
        trace = transforms.target_rps(trace, target_rps)
    return transforms.clip_tokens(trace, max_context_tokens, max_output_tokens)

