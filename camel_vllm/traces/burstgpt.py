"""BurstGPT traces (Wang et al., 2024): CSV with ``Timestamp`` in seconds since the trace start.

Columns: ``Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type``.
Rows whose ``Response tokens`` is 0 are failed requests in the source; they are kept with
one output token so arrival pressure is preserved (the loader never drops rows silently).
"""

from __future__ import annotations

import csv
import os

from camel_vllm.traces.base import Trace, TraceFormatError, from_rows, parse_float, parse_int

REQUIRED = ("Timestamp", "Request tokens", "Response tokens")


def load_burstgpt(path: str) -> Trace:
    rows: list[tuple[float, int, int, tuple[int, ...]]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in fields]
        if missing:
            raise TraceFormatError(path, 1, f"header lacks column(s) {', '.join(missing)} (has {fields})")
        reader.fieldnames = fields
        for record in reader:
            line = reader.line_num
            if None in record or any(record.get(c) is None for c in REQUIRED):
                raise TraceFormatError(path, line, f"expected {len(fields)} fields")
            ts = parse_float(path, line, "Timestamp", record["Timestamp"])
            if ts < 0:
                raise TraceFormatError(path, line, f"Timestamp={ts} must be >= 0")
            prompt = parse_int(path, line, "Request tokens", record["Request tokens"], minimum=0)
            output = parse_int(path, line, "Response tokens", record["Response tokens"], minimum=0)
            rows.append((ts, max(1, prompt), max(1, output), ()))
    return from_rows(os.path.basename(path), path, rows)
