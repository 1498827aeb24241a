"""Trace transforms: time window, first N requests, arrival-rate rescaling, token clipping.

Each returns a new :class:`Trace` with a note saying what was done, so a result file tells
how the datacenter trace was fitted to an edge device (../shared/traces/SOURCES.md asks for it).
"""

from __future__ import annotations

import dataclasses
import math

from camel_vllm.traces.base import Trace, TraceRequest


def _with(trace: Trace, requests: list[TraceRequest], note: str) -> Trace:
    if requests:
        t0 = requests[0].arrival_s
        if t0 != 0.0:
            requests = [dataclasses.replace(r, arrival_s=r.arrival_s - t0) for r in requests]
    return dataclasses.replace(trace, requests=tuple(requests), notes=trace.notes + (note,))


def window(trace: Trace, start_s: float = 0.0, end_s: float | None = None) -> Trace:
    """Keep requests arriving in [start_s, end_s) (seconds since the trace start)."""
    if not math.isfinite(start_s) or start_s < 0:
        raise ValueError(f"--start-s must be a number of seconds >= 0, got {start_s}")
    if end_s is not None and not math.isfinite(end_s):
        raise ValueError(f"--end-s must be a finite number of seconds, got {end_s}")
    if end_s is not None and end_s <= start_s:
        raise ValueError(f"time window end {end_s} s must be after its start {start_s} s")
    kept = [r for r in trace.requests if r.arrival_s >= start_s and (end_s is None or r.arrival_s < end_s)]
    if not kept:
        raise ValueError(f"time window [{start_s}, {end_s}) s holds no request of {trace.name}")
    return _with(trace, kept, f"window {start_s:g}-{'end' if end_s is None else f'{end_s:g}'} s")


def first(trace: Trace, n: int) -> Trace:
    """The first ``n`` requests by arrival."""
    if n < 1:
        raise ValueError(f"--requests must be >= 1, got {n}")
    return _with(trace, list(trace.requests[:n]), f"first {min(n, len(trace))} requests")


def skip(trace: Trace, n: int) -> Trace:
    """Drop the first ``n`` requests (e.g. to train on the part of a trace not replayed)."""
    if n < 0:
        raise ValueError(f"cannot skip {n} requests")
    if n >= len(trace):
        raise ValueError(f"{trace.name} has {len(trace)} requests; cannot skip {n}")
    return _with(trace, list(trace.requests[n:]), f"requests from #{n} on")


def mean_rate_per_s(requests: tuple[TraceRequest, ...] | list[TraceRequest]) -> float:
    """(n - 1) / span: exactly 1.0 for requests one second apart; 0 for fewer than two."""
    if len(requests) < 2:
        return 0.0
    span = requests[-1].arrival_s - requests[0].arrival_s
    return (len(requests) - 1) / span if span > 0 else float("inf")


def target_rps(trace: Trace, rps: float) -> Trace:
    """Scale every inter-arrival gap by one factor so the mean rate is ``rps`` req/s.

    One factor for all gaps keeps the trace's burstiness (its inter-arrival CV) unchanged.
    """
    if not math.isfinite(rps) or rps <= 0:
        raise ValueError(f"--target-rps must be a finite number > 0, got {rps}")
    rate = mean_rate_per_s(trace.requests)
    if rate in (0.0, float("inf")):
        return trace
    factor = rate / rps
    scaled = [dataclasses.replace(r, arrival_s=r.arrival_s * factor) for r in trace.requests]
    return _with(trace, scaled, f"arrivals rescaled x{factor:.4g} to {rps:g} req/s (was {rate:.4g})")


def clip_tokens(trace: Trace, max_context_tokens: int | None = None, max_output_tokens: int | None = None) -> Trace:
    """Clip outputs to ``max_output_tokens``, then prompts so prompt + output fits the context."""
    if max_context_tokens is not None and max_context_tokens < 2:
        raise ValueError(f"--max-context must be >= 2 tokens (a prompt and an output token), got {max_context_tokens}")
    if max_output_tokens is not None and max_output_tokens < 1:
        raise ValueError(f"--max-output must be >= 1 token, got {max_output_tokens}")
    if max_context_tokens is None and max_output_tokens is None:
        return trace
    clipped = 0
    out: list[TraceRequest] = []
    for r in trace.requests:
        output = r.output_tokens if max_output_tokens is None else min(r.output_tokens, max_output_tokens)
        prompt = r.prompt_tokens
        if max_context_tokens is not None:
            output = min(output, max_context_tokens - 1)
            prompt = min(prompt, max_context_tokens - output)
        if (prompt, output) != (r.prompt_tokens, r.output_tokens):
            clipped += 1
            r = dataclasses.replace(r, prompt_tokens=max(1, prompt), output_tokens=max(1, output))
        out.append(r)
    limits = []
    if max_context_tokens is not None:
        limits.append(f"context {max_context_tokens}")
    if max_output_tokens is not None:
        limits.append(f"output {max_output_tokens}")
    return _with(trace, out, f"tokens clipped to {', '.join(limits)} ({clipped} requests changed)")
