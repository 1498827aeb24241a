"""Trace options shared by ``bench sim``, ``bench replay`` and ``trace to-vllm``."""

from __future__ import annotations

import argparse

from camel_vllm.traces import FORMATS, Trace, load_trace


def add_trace_arguments(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    if positional:
        parser.add_argument("trace", help="trace file (Azure CSV, BurstGPT CSV, Mooncake or timed_trace JSONL)")
    else:
        parser.add_argument("--trace", required=True, help="trace file (Azure/BurstGPT CSV, Mooncake/timed_trace JSONL)")
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS), help="trace format (default: detect)")
    parser.add_argument("--start-s", type=float, default=0.0, help="time window start, s since the trace start")
    parser.add_argument("--end-s", type=float, default=None, help="time window end, s since the trace start")
    parser.add_argument("--requests", type=int, default=None, help="keep the first N requests (after the window)")
    parser.add_argument("--target-rps", type=float, default=None,
                        help="rescale arrivals to this mean rate (req/s), keeping burstiness")
    parser.add_argument("--max-context", type=int, default=None,
                        help="clip prompt+output tokens to this context (default: the model's, where known)")
    parser.add_argument("--max-output", type=int, default=None, help="clip output tokens to this many")


def trace_from_args(args: argparse.Namespace, *, max_context_tokens: int | None = None) -> Trace:
    return load_trace(
        args.trace, args.format, start_s=args.start_s, end_s=args.end_s, requests=args.requests,
        target_rps=args.target_rps,
        max_context_tokens=args.max_context if args.max_context is not None else max_context_tokens,
        max_output_tokens=args.max_output,
    )
