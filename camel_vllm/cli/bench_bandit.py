"""Compare camel with the baseline bandits on synthetic environments (emulated Orin profile).

Prints one line per (environment, policy) and writes the JSON result (``--json``) and an
optional cumulative-regret plot (``--plot``). Every figure is emulated.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from camel_vllm.bench.bandit import (BANDIT_POLICIES, BENCH_POLICIES, VARIANTS, cost_scale_study, plot_curves,
                                     run_benchmark)
from camel_vllm.cli import checks
from camel_vllm.core.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arms", type=int, default=49, help="number of arms (default: Camel's 7 x 7 = 49)")
    parser.add_argument("--horizon", type=int, default=2000, help="requests per run (default 2000)")
    parser.add_argument("--seeds", type=int, default=20, help="seeded runs per policy (default 20)")
    parser.add_argument("--env", choices=("stationary", "shift", "both"), default="both")
    parser.add_argument("--policies", default=",".join(BENCH_POLICIES),
                        help=f"comma-separated policy names or variants ({', '.join(VARIANTS)}) "
                             f"(default: {','.join(BENCH_POLICIES)})")
    parser.add_argument("--noise-std", type=float, default=0.25,
                        help="per-request noise of the log-EDP cost (default 0.25)")
    parser.add_argument("--no-ablation", action="store_true", help="skip camel-independent (no sharing)")
    parser.add_argument("--json", metavar="PATH", help=f"write the result as JSON to PATH ({checks.OUTPUT_HELP})")
    parser.add_argument("--plot", metavar="PATH.png",
                        help=f"write the cumulative-regret plot to this file ({checks.OUTPUT_HELP})")
    parser.add_argument("--cost-fit", metavar="TRACE.csv",
                        help="instead: print how Gaussian EDP, log EDP and Camel's weighted cost are per request, "
                             "with lengths from an Azure-format trace (emulated pricing)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.json:
            checks.output_file("--json", args.json, make_folder=True)
        if args.plot:
            checks.output_file("--plot", args.plot, make_folder=True)
        if args.cost_fit:
            checks.input_file("--cost-fit", args.cost_fit)
        checks.distinct_files([("--cost-fit", args.cost_fit)], [("--json", args.json), ("--plot", args.plot)])
    except ConfigError as err:
        print(f"camel-vllm bench bandit: {err}", file=sys.stderr)
        return 2
    if args.cost_fit:
        return _cost_fit(args)
    for key in ("arms", "horizon", "seeds"):
        if getattr(args, key) < 1 or (key == "arms" and args.arms < 2):
            print(f"camel-vllm bench bandit: --{key}={getattr(args, key)} is too small", file=sys.stderr)
            return 2
    if not math.isfinite(args.noise_std) or args.noise_std < 0:
        print(f"camel-vllm bench bandit: --noise-std={args.noise_std} must be a finite number >= 0", file=sys.stderr)
        return 2
    envs = ("stationary", "shift") if args.env == "both" else (args.env,)
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    unknown = [p for p in policies if p not in BANDIT_POLICIES and p not in VARIANTS]
    if unknown or not policies:
        known = ", ".join([*BANDIT_POLICIES, *VARIANTS])
        why = f"unknown {', '.join(unknown)}" if unknown else "name at least one"
        hint = ("; camel learns the board per iteration, which these environments do not model: run it with "
                "bench sim, or camel-ts here" if "camel" in unknown else "")
        print(f"camel-vllm bench bandit: --policies={args.policies}: {why} (known: {known}){hint}", file=sys.stderr)
        return 2
    print(f"bandit benchmark (emulated AGX Orin 32GB): {args.arms} arms, horizon {args.horizon}, {args.seeds} seeds")
    result = run_benchmark(
        num_arms=args.arms, horizon=args.horizon, seeds=args.seeds, envs=envs, policies=policies,
        ablations=not args.no_ablation, noise_std=args.noise_std, progress=print,
    )
    curves = result.pop("_curves")
    for env_name, env in result["envs"].items():
        print(f"[{env_name}] best arm per level: {', '.join(env['best_arm'])}")
        for name, s in env["policies"].items():
            print(f"  {name:18s} regret mean {s['regret_mean']:9.2f}  p90 {s['regret_p90']:9.2f}  "
                  f"best-arm share (last quarter) {s['best_arm_share_last_quarter']:.2f}  "
                  f"near-best {s['near_best_share_last_quarter']:.2f}")
    if args.json:
        checks.make_parent(args.json)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        checks.make_parent(args.plot)
        plot_curves(curves, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _cost_fit(args: argparse.Namespace) -> int:
    try:
        study = cost_scale_study(args.cost_fit)
    except UnicodeDecodeError as err:
        print(f"camel-vllm bench bandit: --cost-fit {args.cost_fit}: not a UTF-8 text file (byte at offset "
              f"{err.start})", file=sys.stderr)
        return 2
    except (OSError, KeyError, ValueError) as err:
        print(f"camel-vllm bench bandit: --cost-fit {args.cost_fit}: {err}", file=sys.stderr)
        return 2
    print("per-request cost distribution (emulated AGX Orin 32GB pricing, trace lengths):")
    for arm, by_cost in study.items():
        print(f"[{arm}]")
        for name, s in by_cost.items():
            print(f"  {name:22s} skew {s['skew']:6.2f}  excess kurtosis {s['excess_kurtosis']:7.2f}  "
                  f"Shapiro W {s['shapiro_w']:.3f}  KS D {s['ks_d']:.3f}  std {s['std']:.3g}")
    if args.json:
        checks.make_parent(args.json)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"emulated": True, "cost_fit": study}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0
