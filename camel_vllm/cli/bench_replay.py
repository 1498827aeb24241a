"""Replay a trace against a running OpenAI-compatible server and write the benchmark JSON.

Requests are sent at their trace timestamps (streaming, so TTFT is measured). Energy and
per-request EDP come from camel's metrics endpoint (``--metrics-url``, e.g. the server's
``/metrics``); they are null without it. Figures are labelled emulated when the server's
camel device is the emulator (``camel_energy_joules_total{source="emulated"}``).

Before sending anything it reads the served model and its ``max_model_len`` from the
server's ``/v1/models`` and clips every request to fit (prompt + output tokens; the smaller
of that and ``--max-context``), saying in one line how many it clipped; the JSON keeps the
count under ``details.NAME.context``. A server that cannot be reached is one line naming
the URL and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys

from camel_vllm.bench.results import BenchResult, format_table
from camel_vllm.cli.trace_args import add_trace_arguments, load_fitted, tighter_limit
from camel_vllm.traces import TraceFormatError

PROG = "camel-vllm bench replay"


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
    from camel_vllm.bench.replay import ServerUnreachable, failures, replay, served_model, to_policy_result

    if not math.isfinite(args.timeout_s) or args.timeout_s <= 0:
        print(f"{PROG}: --timeout-s {args.timeout_s}: must be a finite number > 0 (s)", file=sys.stderr)
        return 2
    try:
        served = served_model(args.url, args.model)
    except ServerUnreachable as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    server_limit = (served.max_model_len, f"max_model_len of {served.model_id} from {args.url.rstrip('/')}/v1/models")
    limit, source = tighter_limit(server_limit, (args.max_context, "--max-context"))
    try:
        trace, fit = load_fitted(args, limit=limit, source=source)
    except (TraceFormatError, ValueError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    print(fit.line() if fit is not None else
          f"{args.url.rstrip('/')}/v1/models reports no max_model_len for {served.model_id}: requests are not "
          "clipped (--max-context N sets a limit)")
    metrics_url = None if args.no_metrics else (args.metrics_url or args.url.rstrip("/") + "/metrics")
    from tqdm import tqdm

    try:
        with tqdm(total=len(trace), desc=args.name, unit="req") as bar:
            result_run = replay(trace, args.url, metrics_url=metrics_url, model=served.model_id,
                                request_timeout_s=args.timeout_s, progress=bar.update)
    except ServerUnreachable as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    emulated = bool(result_run.after and result_run.after.energy_source == "emulated")
    details = {"wall_s": result_run.wall_s, "failures": dict(failures(result_run)),
               "context": fit.as_dict() if fit is not None else None}
    result = BenchResult(
        trace=trace.name, device=args.device, model=args.model or served.model_id, requests=len(trace),
        emulated=emulated, policies={args.name: to_policy_result(trace, result_run)}, mode="replay",
        notes=list(trace.notes) + [f"energy source: {result_run.after.energy_source if result_run.after else 'none'}"],
        details={args.name: details},
    )
    try:
        result.write(args.json)
    except OSError as err:
        print(f"{PROG}: cannot write {args.json}: {err.strerror}", file=sys.stderr)
        return 2
    print(format_table(result, baseline=None))
    bad = failures(result_run)
    if bad:
        print(f"{len(bad)} request(s) failed; first: {next(iter(bad.items()))}", file=sys.stderr)
        return 1
    return 0
