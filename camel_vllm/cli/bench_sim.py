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
from typing import TYPE_CHECKING

from camel_vllm.cli import checks
from camel_vllm.cli.deprecated import add_deprecated_alias
from camel_vllm.cli.trace_args import add_trace_arguments, trace_from_args
from camel_vllm.core.config import CamelConfig, ConfigError, load_yaml_file
from camel_vllm.sim.engine import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS
from camel_vllm.traces import TraceFormatError

if TYPE_CHECKING:
    from camel_vllm.bench.sim import PolicySpec, SimSetup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser)
    parser.add_argument("--device-profile", default=None, metavar="PROFILE",
                        help="emulated device profile, a name or a file (default: --config's device_profile, "
                             "else orin-agx-32gb)")
    add_deprecated_alias(parser, "--device", "--device-profile")
    parser.add_argument("--model-profile", default=None, metavar="PROFILE",
                        help="emulated model profile, a name or a file (default: --config's model_profile, "
                             "else llama-3.2-1b)")
    add_deprecated_alias(parser, "--model", "--model-profile")
    parser.add_argument("--policies", default="default,grid,camel,oracle",
                        help="comma list: default, grid, camel, ts, ucb, epsilon, zeus-ts, oracle, static:MHZ:BATCH")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of policies and device noise (default: --config's seed, else 0)")
    parser.add_argument("--config", default=None,
                        help="YAML with other camel keys (epoch_iterations, cost, device_profile, ...); an option "
                             "given on the command line wins over the file. Its policy_params go to every listed "
                             "policy that takes them (a key none takes is an error); state_path is refused "
                             "(--state-dir); device, emulation_time and metrics_port are bench sim's own")
    parser.add_argument("--max-num-seqs", type=int, default=None,
                        help="engine --max-num-seqs (default: the board profile's serving value, "
                             f"else {DEFAULT_MAX_NUM_SEQS})")
    parser.add_argument("--max-num-batched-tokens", type=int, default=None,
                        help="engine token budget per step (default: the board profile's serving value, else "
                             f"{DEFAULT_MAX_NUM_BATCHED_TOKENS})")
    parser.add_argument("--workers", type=int, default=2, help="parallel simulation processes (default 2)")
    parser.add_argument("--state-dir", default=None,
                        help="learning policies start from STATE_DIR/NAME.json if it exists and save what they "
                             "learned there (persistent learning across runs; default: start cold, save nothing)")
    parser.add_argument("--json", required=True, metavar="PATH",
                        help=f"write the result JSON here ({checks.OUTPUT_HELP})")
    parser.add_argument("--plot-dir", default=None, metavar="DIR",
                        help="write the PNG plots into this folder (made if missing); the command says which it wrote")
    add_deprecated_alias(parser, "--plot", "--plot-dir")


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
        if value is not None and value < minimum:
            raise ConfigError(f"--{option.replace('_', '-')}", value, f"must be an integer >= {minimum}")
    checks.output_file("--json", args.json, make_folder=True)
    if args.plot_dir is not None:
        checks.output_folder("--plot-dir", args.plot_dir)


def base_config(args: argparse.Namespace) -> CamelConfig:
    """``--config``'s camel config (defaults without one); a ``state_path`` in it is refused."""
    if not args.config:
        return CamelConfig()
    raw = load_yaml_file(args.config)
    args.config_model_profile = raw.get("model_profile")
    if raw.get("state_path") is not None:
        raise ConfigError("state_path", raw["state_path"],
                          "bench sim keeps each policy's learned state with --state-dir DIR instead")
    return CamelConfig.from_mapping(raw)


def make_setup(args: argparse.Namespace, base: CamelConfig) -> SimSetup:
    """The setup: a profile or seed given on the command line wins over ``--config``'s.
    A bad profile given as an option is named by the option."""
    from camel_vllm.bench.sim import SimSetup, board_serving

    try:
        model, engine = board_serving(args.device_profile or base.device_profile,
                                      model_profile=args.model_profile or getattr(args, "config_model_profile", None),
                                      max_num_seqs=args.max_num_seqs,
                                      max_num_batched_tokens=args.max_num_batched_tokens)
        return SimSetup.make(device_profile=args.device_profile, model_profile=model, seed=args.seed,
                             base=base, engine=engine, state_dir=_state_dir(args.state_dir))
    except ConfigError as err:
        given = {"device_profile": args.device_profile, "model_profile": args.model_profile}
        if given.get(err.key) is not None and err.value == given[err.key]:
            raise ConfigError("--" + err.key.replace("_", "-"), err.value, err.reason) from err
        raise


def check_files(args: argparse.Namespace, setup: SimSetup, specs: list[PolicySpec]) -> None:
    """Every file the runs will write, before any run: each request log opens for writing, and
    no output is the trace, the config file or another output."""
    from camel_vllm.bench.plots import plot_paths

    outputs: list[tuple[str, str | None]] = [("--json", args.json)]
    for spec in specs:
        config = setup.config_for(spec)
        if config.request_log is not None:
            checks.try_open("request_log", config.request_log, value=setup.config.request_log)
            outputs.append(("request_log", config.request_log))
        if config.state_path is not None:
            outputs.append(("--state-dir", config.state_path))
    if args.plot_dir is not None:
        outputs += [("--plot-dir", path) for path in plot_paths(args.plot_dir)]
    checks.distinct_files([("--trace", args.trace), ("--config", args.config)], outputs)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from camel_vllm.bench.pool import SimWorkerError
    from camel_vllm.bench.results import format_table
    from camel_vllm.bench.sim import ORACLE, arm_set, bench, check_specs, parse_policies
    from camel_vllm.devices.emulator.profiles import load_model_profile

    try:
        check_arguments(args)
        base = base_config(args)
        specs = parse_policies(args.policies)
        setup = make_setup(args, base)
        check_files(args, setup, specs)
        model = load_model_profile(setup.config.model_profile)
        trace = trace_from_args(args, max_context_tokens=model.max_context_tokens)
        n_arms = len(arm_set(setup))
        check_specs(setup, specs)
        if any(s.policy == "oracle3" for s in specs):
            raise ConfigError("policies", "oracle3", "the best static triple is searched by bench matrix only "
                                                     "(bench sim runs static:MHZ:BATCH:PREFILL_MHZ arms)")
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
    checks.make_parent(args.json)
    out.result.write(args.json)
    print(format_table(out.result))
    for spec in specs:
        run = out.runs.get(spec.label)
        if run is not None and run.state_note:
            print(f"{spec.label}: {run.state_note}")
    if ORACLE in out.result.details:
        print(f"oracle arm: {out.result.details[ORACLE]['arm']}  (emulated; {wall_s:.1f} s for {runs} runs)")
    if args.plot_dir:
        from camel_vllm.bench.plots import write_plots

        plots = write_plots(out, args.plot_dir)
        for path in plots.paths:
            print(f"wrote {path}")
        for name, why in plots.skipped.items():
            print(f"did not write {name}: {why}")
    print(f"wrote {args.json}")
    return 0
