"""Simulate policies on a request trace with the emulated device and write the benchmark JSON.

All policies replay the same requests through the same controller code the vLLM scheduler
runs, on a discrete-event model of vLLM's continuous batching (:mod:`camel_vllm.sim.engine`).
``oracle`` runs every arm as a static policy and reports the best in hindsight. Every energy
figure is emulated.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool

from camel_vllm.cli import checks
from camel_vllm.cli.trace_args import add_trace_arguments, trace_from_args
from camel_vllm.core.config import CamelConfig, ConfigError, load_yaml_file
from camel_vllm.sim.engine import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS, EngineConfig
from camel_vllm.traces import TraceFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser)
    parser.add_argument("--device", default="orin-agx-32gb", help="device profile (default orin-agx-32gb)")
    parser.add_argument("--model", default="llama-3.2-1b", help="model profile (default llama-3.2-1b)")
    parser.add_argument("--policies", default="default,grid,camel,oracle",
                        help="comma list: default, grid, camel, ts, ucb, epsilon, zeus-ts, oracle, static:MHZ:BATCH")
    parser.add_argument("--seed", type=int, default=0, help="seed of policies and device noise")
    parser.add_argument("--config", default=None,
                        help="YAML with other camel keys (epoch_iterations, cost, ...); its policy_params go to "
                             "every listed policy that takes them (a key none takes is an error)")
    parser.add_argument("--max-num-seqs", type=int, default=DEFAULT_MAX_NUM_SEQS, help="engine --max-num-seqs")
    parser.add_argument("--max-num-batched-tokens", type=int, default=DEFAULT_MAX_NUM_BATCHED_TOKENS,
                        help="engine token budget per step")
    parser.add_argument("--workers", type=int, default=2, help="parallel simulation processes (default 2)")
    parser.add_argument("--state-dir", default=None,
                        help="learning policies start from STATE_DIR/NAME.json if it exists and save what they "
                             "learned there (persistent learning across runs; default: start cold, save nothing)")
    parser.add_argument("--json", required=True, help="write the result JSON here")
    parser.add_argument("--plot", default=None, help="write PNG plots into this folder")


def _state_dir(path: str | None) -> str | None:
    """``--state-dir``, made if missing; a path that cannot be a folder is a ConfigError."""
    if path is None:
        return None
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError("state-dir", path, "exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ConfigError("state-dir", path, f"cannot make this folder ({err.strerror})") from err
    return path


def check_arguments(args: argparse.Namespace) -> None:
    """Every numeric option and output path, before anything is simulated. Raises ConfigError."""
    for option, minimum in (("max_num_seqs", 1), ("max_num_batched_tokens", 1), ("workers", 1), ("seed", 0)):
        value = getattr(args, option)
        if value < minimum:
            raise ConfigError(f"--{option.replace('_', '-')}", value, f"must be an integer >= {minimum}")
    checks.output_file("--json", args.json)
    if args.plot is not None:
        checks.output_folder("--plot", args.plot)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from camel_vllm.bench.pool import SimWorkerError
    from camel_vllm.bench.results import format_table
    from camel_vllm.bench.sim import ORACLE, SimSetup, arm_set, bench, check_specs, parse_policies
    from camel_vllm.devices.emulator.profiles import load_model_profile

    try:
        check_arguments(args)
        base = CamelConfig.from_mapping(load_yaml_file(args.config)) if args.config else CamelConfig()
        specs = parse_policies(args.policies)
        model = load_model_profile(args.model)
        trace = trace_from_args(args, max_context_tokens=model.max_context_tokens)
        setup = SimSetup.make(device_profile=args.device, model_profile=args.model, seed=args.seed, base=base,
                              engine=EngineConfig(args.max_num_seqs, args.max_num_batched_tokens),
                              state_dir=_state_dir(args.state_dir))
        n_arms = len(arm_set(setup))
        check_specs(setup, specs)
    except (ConfigError, TraceFormatError, ValueError) as err:
        print(f"camel-vllm bench sim: {err}", file=sys.stderr)
        return 2
    runs = len([s for s in specs if s.policy != ORACLE]) + (n_arms if any(s.policy == ORACLE for s in specs) else 0)
    t0 = time.perf_counter()
    try:
        with tqdm(total=runs * len(trace), desc="simulating", unit="req") as bar:
            out = bench(setup, specs, trace, workers=args.workers, progress=bar.update)
    except (ConfigError, SimWorkerError, BrokenProcessPool) as err:
        print(f"camel-vllm bench sim: {err}", file=sys.stderr)
        return 2
    wall_s = time.perf_counter() - t0
    out.result.notes.append(f"{runs} simulated runs of {len(trace)} requests in {wall_s:.1f} s wall "
                            f"({args.workers} worker processes)")
    out.result.write(args.json)
    print(format_table(out.result))
    for spec in specs:
        run = out.runs.get(spec.label)
        if run is not None and run.state_note:
            print(f"{spec.label}: {run.state_note}")
    if ORACLE in out.result.details:
        print(f"oracle arm: {out.result.details[ORACLE]['arm']}  (emulated; {wall_s:.1f} s for {runs} runs)")
    if args.plot:
        from camel_vllm.bench.plots import write_plots

        for path in write_plots(out, args.plot):
            print(f"wrote {path}")
    print(f"wrote {args.json}")
    return 0
