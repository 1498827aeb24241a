"""Run policies on every (board, trace, load) cell and report camel against default and the best static arm.

Load is a fraction of the default arm's saturated throughput on each trace (see
:mod:`camel_vllm.bench.matrix`). Each ``--device-profile`` is a board (a shipped name or a
profile file); a board's profile may say how vLLM serves there (``serving:`` model profile and
engine limits), which the command line overrides. One table and one heatmap per board. Every
energy figure is emulated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

from camel_vllm.cli import checks
from camel_vllm.cli.deprecated import add_deprecated_alias
from camel_vllm.core.config import CamelConfig, ConfigError, load_yaml_file
from camel_vllm.traces import TraceFormatError

DEFAULT_DEVICE_PROFILE = "orin-agx-32gb"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", action="append", default=None,
                        help="a trace file or synthetic:KIND (long-prompt, short-prompt-long-output, on-off); "
                             "repeat for several (default: the README's suite of five)")
    parser.add_argument("--loads", default="0.2,0.5,0.8,1.0",
                        help="comma list of loads, fractions of the default arm's capacity (default 0.2,0.5,0.8,1.0)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per cell and seed (default 1000)")
    parser.add_argument("--policies", default="default,camel,ts,oracle",
                        help="comma list as in bench sim (default default,camel,ts,oracle)")
    parser.add_argument("--device-profile", action="append", default=None, metavar="NAME|FILE",
                        help="a board: device profile name or file; repeat for several "
                             f"(default {DEFAULT_DEVICE_PROFILE}, or the --config file's device_profile)")
    parser.add_argument("--model-profile", default=None, metavar="NAME|FILE",
                        help="model profile on every board (default: each board's serving model, else llama-3.2-1b)")
    parser.add_argument("--config", default=None, help="YAML with other camel keys (device_profile and "
                                                        "model_profile are used where the options are not given)")
    parser.add_argument("--max-num-seqs", type=int, default=None,
                        help="engine --max-num-seqs (default: the board's serving value, else 28)")
    parser.add_argument("--max-num-batched-tokens", type=int, default=None,
                        help="engine token budget per step (default: the board's serving value, else 2048)")
    parser.add_argument("--workers", type=int, default=2, help="parallel simulation processes (default 2)")
    parser.add_argument("--json", required=True, help=f"write the result JSON here ({checks.OUTPUT_HELP})")
    parser.add_argument("--plot", default=None,
                        help=f"write the heatmap PNG here; with several boards, one per board: STEM-BOARD.png "
                             f"({checks.OUTPUT_HELP})")
    add_deprecated_alias(parser, "--device", "--device-profile")
    add_deprecated_alias(parser, "--model", "--model-profile")


def _loads(text: str) -> tuple[float, ...]:
    try:
        loads = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise ConfigError("loads", text, "must be a comma list of numbers") from err
    if not loads or not all(math.isfinite(x) and x > 0 for x in loads):
        raise ConfigError("loads", text, "every load must be a number > 0")
    return loads


def plot_paths(path: str, boards: list[str]) -> list[str]:
    """One heatmap per board: ``path`` itself for one board, else ``STEM-BOARD.EXT`` per board."""
    if len(boards) == 1:
        return [path]
    stem, ext = os.path.splitext(path)
    return [f"{stem}-{os.path.splitext(os.path.basename(b))[0]}{ext or '.png'}" for b in boards]


def _plans(args: argparse.Namespace, raw_config: dict[str, Any]) -> list[Any]:
    """One matrix plan per board (checked: profiles, engine limits, policies, traces)."""
    from camel_vllm.bench.matrix import DEFAULT_TRACES, MatrixPlan, cell_trace
    from camel_vllm.bench.sim import SimSetup, board_serving, check_specs, parse_policies
    from camel_vllm.devices.emulator.profiles import load_model_profile

    base = CamelConfig.from_mapping(raw_config)
    specs = tuple(parse_policies(args.policies))
    boards = args.device_profile or [raw_config.get("device_profile", DEFAULT_DEVICE_PROFILE)]
    plans = []
    for name in boards:
        model_name, engine = board_serving(name, model_profile=args.model_profile or raw_config.get("model_profile"),
                                           max_num_seqs=args.max_num_seqs,
                                           max_num_batched_tokens=args.max_num_batched_tokens)
        model_name = model_name or base.model_profile
        model = load_model_profile(model_name)
        setup = SimSetup.make(device_profile=name, model_profile=model_name, base=base, engine=engine)
        check_specs(setup, specs)
        plans.append(MatrixPlan(traces=tuple(args.trace or DEFAULT_TRACES), loads=_loads(args.loads), seeds=args.seeds,
                                requests=args.requests, policies=specs, setup=setup,
                                max_context_tokens=model.max_context_tokens))
    for spec in plans[0].traces:  # every trace readable before anything runs
        cell_trace(spec, 0, 2, max_context_tokens=plans[0].max_context_tokens)
    return plans


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from camel_vllm.bench.matrix import cell_trace, count_runs, run_matrix
    from camel_vllm.bench.matrix_report import (BoardResult, board_heading, format_latency, format_matrix,
                                                matrix_to_dict)
    from camel_vllm.bench.sim import arm_set

    try:
        for key, value, ok in (("seeds", args.seeds, args.seeds >= 1), ("requests", args.requests, args.requests >= 2),
                               ("workers", args.workers, args.workers >= 1),
                               ("max-num-seqs", args.max_num_seqs, args.max_num_seqs is None or args.max_num_seqs >= 1),
                               ("max-num-batched-tokens", args.max_num_batched_tokens,
                                args.max_num_batched_tokens is None or args.max_num_batched_tokens >= 1)):
            if not ok:
                raise ConfigError(key, value, "must be a positive integer" if key != "requests" else "must be >= 2")
        checks.output_file("json", args.json, make_folder=True)
        if args.plot is not None:
            checks.output_file("plot", args.plot, make_folder=True)
        inputs = [("--trace", t) for t in args.trace or () if not t.startswith("synthetic:")]
        inputs += [("--config", args.config)] + [("--device-profile", d) for d in args.device_profile or ()]
        checks.distinct_files(inputs, [("--json", args.json), ("--plot", args.plot)])
        raw_config = load_yaml_file(args.config) if args.config else {}
        plans = _plans(args, raw_config)
        notes = []
        for spec in plans[0].traces:
            n = len(cell_trace(spec, 0, plans[0].requests, max_context_tokens=plans[0].max_context_tokens))
            if n < plans[0].requests:
                notes.append(f"{spec} holds {n} requests, fewer than --requests {plans[0].requests}: "
                             f"its cells replay {n}")
                print(f"camel-vllm bench matrix: note: {notes[-1]}", file=sys.stderr)
        t0 = time.perf_counter()
        results = []
        for plan in plans:
            arms = len(arm_set(plan.setup))
            with tqdm(total=count_runs(plan), desc=f"matrix {plan.setup.config.device_profile}", unit="run") as bar:
                results.append(BoardResult(plan, run_matrix(plan, workers=args.workers, progress=bar.update), arms))
    except (ConfigError, TraceFormatError, ValueError) as err:
        print(f"camel-vllm bench matrix: {err}", file=sys.stderr)
        return 2
    wall_s = time.perf_counter() - t0
    runs = sum(count_runs(p) for p in plans)
    data = matrix_to_dict(results, notes=notes + [f"{runs} simulated runs in {wall_s:.0f} s wall ({args.workers} "
                                                  "worker processes); every energy figure is emulated"])
    checks.make_parent(args.json)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    specs = plans[0].policies
    tested = next((p.label for p in specs if p.policy == "camel"), specs[-1].label)
    names = [p.label for p in specs if p.policy != "oracle"]
    if "default" not in names:
        names.insert(0, "default")
    for board in results:
        print(board_heading(board))
        print(format_matrix(board.cells, tested))
        print("latency (emulated board, simulated engine):")
        print(format_latency(board.cells, names))
        print()
    if args.plot:
        from camel_vllm.bench.plots import plot_matrix

        checks.make_parent(args.plot)
        for board, path in zip(results, plot_paths(args.plot, [b.device for b in results]), strict=False):
            print(f"wrote {plot_matrix(board.cells, path, tested, title=board.device)}")
    print(f"wrote {args.json}")
    return 0
