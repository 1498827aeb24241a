"""The trace model shared by every loader: requests with arrival offsets and token counts.

A trace is a list of :class:`TraceRequest` sorted by arrival; ``arrival_s`` is seconds since
the trace's first request (so replays start at 0), whatever the source's clock was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from camel_vllm.core.errors import CamelError


class TraceFormatError(CamelError, ValueError):
    """A trace file is malformed. ``str(err)`` is one line: ``FILE:LINE: what was wrong``."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, int | None, str]]:
        """Pickle by the constructor's arguments (a worker process's error reaches its parent)."""
        return (type(self), (self.path, self.line, self.reason))


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request: when it arrives (s since the trace start) and its token counts."""

    request_id: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Trace:
    """A loaded trace. ``notes`` records every transform applied (printed in results)."""

    name: str
    requests: tuple[TraceRequest, ...]
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.requests)

    @property
    def duration_s(self) -> float:
        return self.requests[-1].arrival_s - self.requests[0].arrival_s if self.requests else 0.0

    @property
    def mean_rate_per_s(self) -> float:
        """Requests per second over the trace (n / span; 0 for fewer than two requests)."""
        span = self.duration_s
        return len(self.requests) / span if span > 0 else 0.0


def parse_int(path: str, line: int, column: str, raw: object, *, minimum: int = 0) -> int:
    """An integer token count >= ``minimum``, or a :class:`TraceFormatError` naming the column."""
    try:
        if isinstance(raw, bool):
            raise ValueError
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError
            value = int(raw)
        else:
            value = int(str(raw).strip())
    except (TypeError, ValueError) as err:
        raise TraceFormatError(path, line, f"{column}={raw!r} is not an integer") from err
    if value < minimum:
        raise TraceFormatError(path, line, f"{column}={value} must be >= {minimum}")
    return value


def parse_float(path: str, line: int, column: str, raw: object) -> float:
    """A finite number, or a :class:`TraceFormatError` naming the column."""
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
    except (TypeError, ValueError) as err:
        raise TraceFormatError(path, line, f"{column}={raw!r} is not a number") from err
    if value != value or value in (float("inf"), float("-inf")):
        raise TraceFormatError(path, line, f"{column}={raw!r} is not finite")
    return value


def from_rows(name: str, source: str, rows: list[tuple[float, int, int, tuple[int, ...]]]) -> Trace:
    """Rows of (absolute arrival s, prompt, output, hash ids) -> a trace starting at 0, sorted."""
    if not rows:
        raise TraceFormatError(source, None, "no requests in the file")
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    t0 = rows[order[0]][0]
    requests = tuple(
        TraceRequest(request_id=str(k), arrival_s=rows[i][0] - t0, prompt_tokens=rows[i][1],
                     output_tokens=rows[i][2], hash_ids=rows[i][3])
        for k, i in enumerate(order)
    )
    return Trace(name=name, requests=requests, source=source)
