"""Convert a trace to vLLM's timed_trace JSONL for `vllm bench serve --dataset-name timed_trace`.

The output holds offsets in seconds from the first request (vLLM's default
``--timed-trace-sec-multiplier 1``) and ceil(input_length / 16) distinct ``hash_ids`` per
request (vLLM's default ``--timed-trace-chunk-hash-size 16``), so vLLM builds prompts of the
trace's lengths. Requests are clipped to a context limit (prompt + output tokens) taken from
``--max-context`` or from a model folder's ``config.json`` (``--model-dir``; the smaller of the
two when both are given), and the command says how many it clipped: a server refuses a request
longer than its ``--max-model-len`` with HTTP 400. Replay it with vLLM's own client, e.g.::

    camel-vllm vllm bench serve --backend vllm --dataset-name timed_trace --dataset-path OUT.jsonl \
        --num-prompts N --model MODEL --base-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import sys

from camel_vllm.cli import checks
from camel_vllm.cli.trace_args import add_trace_arguments, context_from_model_dir, load_fitted, tighter_limit
from camel_vllm.core.config import ConfigError
from camel_vllm.traces import TraceFormatError, write_timed_trace

PROG = "camel-vllm trace to-vllm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser, positional=True)
    parser.add_argument("out", help=f"output JSONL file ({checks.OUTPUT_HELP})")
    parser.add_argument("--model-dir", default=None,
                        help="model folder whose config.json sets the context limit (as vLLM reads it); "
                             "a server started with a smaller --max-model-len needs --max-context too")


def run(args: argparse.Namespace) -> int:
    try:
        checks.output_file("OUT", args.out, make_folder=True)
        checks.distinct_files([("TRACE", args.trace)], [("OUT", args.out)])
        from_model = context_from_model_dir(args.model_dir) if args.model_dir else (None, "")
        limit, source = tighter_limit((args.max_context, "--max-context"), from_model)
        trace, fit = load_fitted(args, limit=limit, source=source)
    except (ConfigError, TraceFormatError, ValueError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    try:
        checks.make_parent(args.out)
        n = write_timed_trace(trace, args.out)
    except OSError as err:
        print(f"{PROG}: cannot write {args.out}: {err.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {n} requests over {trace.duration_s:.1f} s to {args.out}"
          + (f" ({'; '.join(trace.notes)})" if trace.notes else ""))
    if fit is not None:
        print(fit.line())
    else:
        print("no context limit given: requests are not clipped (--max-context N or --model-dir DIR sets one)")
    return 0
