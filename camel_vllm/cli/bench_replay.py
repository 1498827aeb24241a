"""Replay a trace against a running OpenAI-compatible server and write the benchmark JSON.

Requests are sent at their trace timestamps (streaming, so TTFT is measured). Energy and
per-request EDP come from camel's metrics endpoint (``--metrics-url``, e.g. the server's
``/metrics``); they are null without it. Figures are labelled emulated when the server's
camel device is the emulator (``camel_energy_joules_total{source="emulated"}``).

Before sending anything it reads the served model and its ``max_model_len`` from the
server's ``/v1/models`` and clips every request to fit (prompt + output tokens; the smaller
of that and ``--max-context``), saying in one line how many it clipped; the JSON keeps the
count under ``details.NAME.context``. A server still starting is waited for (``--ready-timeout-s``,
default 60 s); one that does not answer by then, or cannot be reached, is one line naming the
URL and exit status 2, before anything is replayed. So is a ``--metrics-url`` that is not
Prometheus text. Without camel's series at the metrics URL it says so in one line, leaves energy,
EDP and switches out of the table and writes them as null (``details.NAME.camel_metrics`` says why).
"""

from __future__ import annotations

import argparse
import math
import sys

from camel_vllm.bench.results import BenchResult, format_table
from camel_vllm.cli import checks
from camel_vllm.cli.deprecated import add_deprecated_alias
from camel_vllm.cli.trace_args import add_trace_arguments, load_fitted, tighter_limit
from camel_vllm.core.config import ConfigError
from camel_vllm.core.paths import file_problem
from camel_vllm.traces import TraceFormatError

PROG = "camel-vllm bench replay"
#: Default of ``--ready-timeout-s``: a vLLM server with ``--enforce-eager`` starts in ~30 s here.
READY_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser)
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--ready-timeout-s", type=float, default=READY_TIMEOUT_S,
                        help=f"wait up to this long for a starting server to answer /v1/models (s, default "
                             f"{READY_TIMEOUT_S:g}; 0: ask once)")
    parser.add_argument("--metrics-url", default=None, help="Prometheus URL with camel_* series (default: URL/metrics)")
    parser.add_argument("--no-metrics", action="store_true", help="do not read energy from the server")
    parser.add_argument("--model", default=None,
                        help="served model name to request, as vLLM's --model (default: the server's first)")
    parser.add_argument("--name", default="replay", help="policy name to file the run under in the JSON")
    parser.add_argument("--device-label", default="server", help="what the JSON's device field says (default server)")
    add_deprecated_alias(parser, "--device", "--device-label")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per-request timeout (s)")
    parser.add_argument("--json", required=True, metavar="PATH",
                        help=f"write the result JSON here ({checks.OUTPUT_HELP})")


def _metrics(args: argparse.Namespace) -> tuple[str | None, dict[str, object]]:
    """The metrics URL to read during the replay (``None``: none with camel's series) and what
    the JSON says about it. Raises MetricsUnavailable for a bad explicit ``--metrics-url``."""
    from camel_vllm.bench.replay import MetricsUnavailable, read_metrics_once

    if args.no_metrics:
        return None, {"url": None, "found": False, "why": "not read (--no-metrics)"}
    url = args.metrics_url or args.url.rstrip("/") + "/metrics"
    try:
        reading = read_metrics_once(url)
    except MetricsUnavailable as err:
        if args.metrics_url:
            raise
        return None, {"url": url, "found": False, "why": str(err)}
    if not reading.has_camel:
        return None, {"url": url, "found": False, "why": "no camel_* series there"}
    return url, {"url": url, "found": True}


def run(args: argparse.Namespace) -> int:
    from camel_vllm.bench.replay import MetricsUnavailable, ServerUnreachable, failures, replay, to_policy_result
    from camel_vllm.bench.replay import wait_for_server

    for option, value, minimum in (("--timeout-s", args.timeout_s, None),
                                   ("--ready-timeout-s", args.ready_timeout_s, 0.0)):
        if not math.isfinite(value) or (value <= 0 if minimum is None else value < minimum):
            print(f"{PROG}: {option} {value}: must be a finite number {'> 0' if minimum is None else '>= 0'} (s)",
                  file=sys.stderr)
            return 2
    problem = file_problem(args.trace)  # before waiting for the server, in the trace loader's words
    if problem:
        print(f"{PROG}: {args.trace}: {problem}", file=sys.stderr)
        return 2
    try:
        checks.output_file("--json", args.json, make_folder=True)
        checks.distinct_files([("--trace", args.trace)], [("--json", args.json)])
    except ConfigError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    try:
        served = wait_for_server(args.url, args.model, ready_timeout_s=args.ready_timeout_s, on_wait=lambda why: print(
            f"waiting up to {args.ready_timeout_s:g} s (--ready-timeout-s) for a server at {args.url} ({why})",
            flush=True))
        metrics_url, metrics_note = _metrics(args)
    except (ServerUnreachable, MetricsUnavailable) as err:
        where = "--metrics-url: " if isinstance(err, MetricsUnavailable) else ""
        print(f"{PROG}: {where}{err}", file=sys.stderr)
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
    if metrics_url is None and not args.no_metrics:
        print(f"no camel metrics at {metrics_note['url']} ({metrics_note['why']}): energy, EDP and switches are "
              "not measured and left out (serve with --scheduler camel and a metrics_port, then pass --metrics-url)")
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
               "context": fit.as_dict() if fit is not None else None, "camel_metrics": metrics_note}
    result = BenchResult(
        trace=trace.name, device=args.device_label, model=args.model or served.model_id, requests=len(trace),
        emulated=emulated, policies={args.name: to_policy_result(trace, result_run)}, mode="replay",
        notes=list(trace.notes) + [f"energy source: {result_run.after.energy_source if result_run.after else 'none'}"],
        details={args.name: details},
    )
    try:
        checks.make_parent(args.json)
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
