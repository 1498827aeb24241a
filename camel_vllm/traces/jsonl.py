"""Shared reader for the two JSONL formats (Mooncake and vLLM's ``timed_trace``)."""

from __future__ import annotations

import json
import os

from camel_vllm.traces.base import Trace, TraceFormatError, from_rows, parse_float, parse_int


def load_jsonl(path: str, *, seconds_per_unit: float) -> Trace:
    """Each line ``{"timestamp", "input_length", "output_length"[, "hash_ids"]}``.

    ``timestamp`` (>= 0) x ``seconds_per_unit`` gives seconds (Mooncake: ms -> 0.001; vLLM: 1).
    """
    rows: list[tuple[float, int, int, tuple[int, ...]]] = []
    with open(path, encoding="utf-8") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as err:
                raise TraceFormatError(path, line, f"not valid JSON ({err.msg})") from err
            if not isinstance(entry, dict):
                raise TraceFormatError(path, line, "expected a JSON object")
            for key in ("timestamp", "input_length", "output_length"):
                if key not in entry:
                    raise TraceFormatError(path, line, f"missing key '{key}' (has {sorted(entry)})")
            ts = parse_float(path, line, "timestamp", entry["timestamp"])
            if ts < 0:
                raise TraceFormatError(path, line, f"timestamp={ts} must be >= 0")
            ts *= seconds_per_unit
            prompt = parse_int(path, line, "input_length", entry["input_length"], minimum=1)
            output = parse_int(path, line, "output_length", entry["output_length"], minimum=0)
            hashes = entry.get("hash_ids", [])
            if not isinstance(hashes, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hashes):
                raise TraceFormatError(path, line, f"hash_ids={hashes!r} is not a list of integers")
            rows.append((ts, prompt, max(1, output), tuple(hashes)))
    return from_rows(os.path.basename(path), path, rows)
