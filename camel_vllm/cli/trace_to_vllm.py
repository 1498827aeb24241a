"""Convert a trace to vLLM's timed_trace JSONL for `vllm bench serve --dataset-name timed_trace`.

The output holds offsets in seconds from the first request (vLLM's default
``--timed-trace-sec-multiplier 1``) and ceil(input_length / 16) distinct ``hash_ids`` per
request (vLLM's default ``--timed-trace-chunk-hash-size 16``), so vLLM builds prompts of the
trace's lengths. Replay it with, e.g.::

    vllm bench serve --backend vllm --dataset-name timed_trace --dataset-path OUT.jsonl \
        --num-prompts N --model MODEL
"""

from __future__ import annotations

import argparse
import sys

from camel_vllm.cli.trace_args import add_trace_arguments, trace_from_args
from camel_vllm.traces import TraceFormatError, write_timed_trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser, positional=True)
    parser.add_argument("out", help="output JSONL file")


def run(args: argparse.Namespace) -> int:
    try:
        trace = trace_from_args(args)
    except (TraceFormatError, ValueError) as err:
        print(f"camel-vllm trace to-vllm: {err}", file=sys.stderr)
        return 2
    n = write_timed_trace(trace, args.out)
    print(f"wrote {n} requests over {trace.duration_s:.1f} s to {args.out}"
          + (f" ({'; '.join(trace.notes)})" if trace.notes else ""))
    return 0
