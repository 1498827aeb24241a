"""Run policies on every (trace, load) cell and report camel against default and the best static arm.

Load is a fraction of the default arm's saturated throughput on each trace (see
:mod:`camel_vllm.bench.matrix`). Every figure is emulated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from camel_vllm.core.config import CamelConfig, ConfigError, load_yaml_file
from camel_vllm.sim.engine import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS, EngineConfig
from camel_vllm.traces import TraceFormatError


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
    parser.add_argument("--device", default="orin-agx-32gb", help="device profile (default orin-agx-32gb)")
    parser.add_argument("--model", default="llama-3.2-1b", help="model profile (default llama-3.2-1b)")
    parser.add_argument("--config", default=None, help="YAML with other camel keys")
    parser.add_argument("--max-num-seqs", type=int, default=DEFAULT_MAX_NUM_SEQS, help="engine --max-num-seqs")
    parser.add_argument("--max-num-batched-tokens", type=int, default=DEFAULT_MAX_NUM_BATCHED_TOKENS,
                        help="engine token budget per step")
    parser.add_argument("--workers", type=int, default=2, help="parallel simulation processes (default 2)")
    parser.add_argument("--json", required=True, help="write the result JSON here")
    parser.add_argument("--plot", default=None, help="write the heatmap PNG here")


def _loads(text: str) -> tuple[float, ...]:
    try:
        loads = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise ConfigError("loads", text, "must be a comma list of numbers") from err
    if not loads or not all(math.isfinite(x) and x > 0 for x in loads):
        raise ConfigError("loads", text, "every load must be a number > 0")
    return loads


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from camel_vllm.bench.matrix import DEFAULT_TRACES, MatrixPlan, count_runs, format_matrix, matrix_to_dict, run_matrix
    from camel_vllm.bench.sim import SimSetup, parse_policies
    from camel_vllm.devices.emulator.profiles import load_model_profile

    try:
        for key, value, ok in (("seeds", args.seeds, args.seeds >= 1), ("requests", args.requests, args.requests >= 2),
                               ("workers", args.workers, args.workers >= 1),
                               ("max-num-seqs", args.max_num_seqs, args.max_num_seqs >= 1),
                               ("max-num-batched-tokens", args.max_num_batched_tokens, args.max_num_batched_tokens >= 1)):
            if not ok:
                raise ConfigError(key, value, "must be a positive integer" if key != "requests" else "must be >= 2")
        for key, path, want_dir in (("json", args.json, False), ("plot", args.plot, False)):
            if path is not None and os.path.isdir(path):
                raise ConfigError(key, path, "is a folder; give a file path")
        base = CamelConfig.from_mapping(load_yaml_file(args.config)) if args.config else CamelConfig()
        specs = tuple(parse_policies(args.policies))
        model = load_model_profile(args.model)
        setup = SimSetup.make(device_profile=args.device, model_profile=args.model, base=base,
                              engine=EngineConfig(args.max_num_seqs, args.max_num_batched_tokens))
        plan = MatrixPlan(traces=tuple(args.trace or DEFAULT_TRACES), loads=_loads(args.loads), seeds=args.seeds,
                          requests=args.requests, policies=specs, setup=setup,
                          max_context_tokens=model.max_context_tokens)
        from camel_vllm.bench.matrix import cell_trace

        for spec in plan.traces:  # every trace readable before anything runs
            cell_trace(spec, 0, 2, max_context_tokens=plan.max_context_tokens)
        t0 = time.perf_counter()
        with tqdm(total=count_runs(plan), desc="matrix", unit="run") as bar:
            cells = run_matrix(plan, workers=args.workers, progress=bar.update)
    except (ConfigError, TraceFormatError, ValueError) as err:
        print(f"camel-vllm bench matrix: {err}", file=sys.stderr)
        return 2
    wall_s = time.perf_counter() - t0
    data = matrix_to_dict(plan, cells, notes=[f"{count_runs(plan)} simulated runs in {wall_s:.0f} s wall "
                                              f"({args.workers} worker processes); every energy figure is emulated"])
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    tested = next((p.label for p in specs if p.policy == "camel"), specs[-1].label)
    print(f"{args.device} / {args.model}, {args.requests} requests x {args.seeds} seeds per cell (EMULATED energy)")
    print(format_matrix(cells, tested))
    if args.plot:
        from camel_vllm.bench.plots import plot_matrix

        print(f"wrote {plot_matrix(cells, args.plot, tested)}")
    print(f"wrote {args.json}")
    return 0
