"""Azure LLM inference traces (Patel et al., Splitwise, ISCA 2024; CC-BY-4.0).

CSV with header ``TIMESTAMP,ContextTokens,GeneratedTokens``; ``TIMESTAMP`` is wall-clock
``YYYY-MM-DD HH:MM:SS.fffffff`` (7 fractional digits, more than :mod:`datetime` parses, so
the fraction is read separately).
"""

from __future__ import annotations

import csv
import os
from datetime import datetime, timezone

from camel_vllm.traces.base import Trace, TraceFormatError, from_rows, parse_int

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def parse_timestamp_s(path: str, line: int, raw: str) -> float:
    """``2023-11-16 18:15:46.6805900`` -> POSIX seconds (UTC assumed: only offsets matter)."""
    text = raw.strip()
    whole, _, frac = text.partition(".")
    try:
        base = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        fraction = float("0." + frac) if frac else 0.0
        if frac and not frac.isdigit():
            raise ValueError
    except ValueError as err:
        raise TraceFormatError(path, line, f"TIMESTAMP={raw!r} is not 'YYYY-MM-DD HH:MM:SS[.fraction]'") from err
    return base + fraction


def load_azure(path: str) -> Trace:
    """Load an Azure LLM inference CSV."""
    rows: list[tuple[float, int, int, tuple[int, ...]]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:3]) != COLUMNS:
            raise TraceFormatError(path, 1, f"header {header!r} is not {','.join(COLUMNS)}")
        for record in reader:
            line = reader.line_num
            if not record or all(not c.strip() for c in record):
                continue
            if len(record) != 3:
                raise TraceFormatError(path, line, f"expected 3 fields, got {len(record)}")
            ts = parse_timestamp_s(path, line, record[0])
            prompt = parse_int(path, line, "ContextTokens", record[1], minimum=1)
            output = parse_int(path, line, "GeneratedTokens", record[2], minimum=0)
            rows.append((ts, prompt, max(1, output), ()))
    return from_rows(os.path.basename(path), path, rows)
