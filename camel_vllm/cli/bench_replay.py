"""Replay a trace against a running OpenAI-compatible server and write the benchmark JSON.

Requests are sent at their trace timestamps (streaming, so TTFT is measured). Energy and
per-request EDP come from camel's metrics endpoint (``--metrics-url``, e.g. the server's
``/metrics``); they are null without it. Figures are labelled emulated when the server's
camel device is the emulator (``camel_energy_joules_total{source="emulated"}``).
"""

from __future__ import annotations

import argparse
import sys

from camel_vllm.cli.trace_args import add_trace_arguments, trace_from_args
from camel_vllm.sim.results import BenchResult, format_table
from camel_vllm.traces import TraceFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser)
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--metrics-url", default=None, help="Prometheus URL with camel_* series (default: URL/metrics)")
    parser.add_argument("--no-metrics", action="store_true", help="do not read energy from the server")
    parser.add_argument("--model", default=None, help="model name to request (default: the server's first)")
    parser.add_argument("--name", default="replay", help="policy name to file the run under in the JSON")
    parser.add_argument("--device", default="server", help="device label for the JSON")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per-request timeout (s)")
    parser.add_argument("--json", required=True, help="write the result JSON here")


def run(args: argparse.Namespace) -> int:
    from camel_vllm.replay import failures, replay, to_policy_result

    try:
        trace = trace_from_args(args)
    except (TraceFormatError, ValueError) as err:
        print(f"camel-vllm bench replay: {err}", file=sys.stderr)
        return 2
    metrics_url = None if args.no_metrics else (args.metrics_url or args.url.rstrip("/") + "/metrics")
    from tqdm import tqdm

    with tqdm(total=len(trace), desc=args.name, unit="req") as bar:
        result_run = replay(trace, args.url, metrics_url=metrics_url, model=args.model,
                            request_timeout_s=args.timeout_s, progress=bar.update)
    emulated = bool(result_run.after and result_run.after.energy_source == "emulated")
    result = BenchResult(
        trace=trace.name, device=args.device, model=args.model or "server", requests=len(trace),
        emulated=emulated, policies={args.name: to_policy_result(trace, result_run)}, mode="replay",
        notes=list(trace.notes) + [f"energy source: {result_run.after.energy_source if result_run.after else 'none'}"],
        details={args.name: {"wall_s": result_run.wall_s, "failures": dict(failures(result_run))}},
    )
    result.write(args.json)
    print(format_table(result, baseline=None))
    bad = failures(result_run)
    if bad:
        print(f"{len(bad)} request(s) failed; first: {next(iter(bad.items()))}", file=sys.stderr)
        return 1
    return 0
