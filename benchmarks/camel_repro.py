"""Camel's experiment (arXiv 2508.09173) reproduced on the emulated Jetson AGX Orin 32GB.

Setup as in the paper: 49 arms (7 GPU frequencies x batch caps 4..28), short Alpaca-like
prompts arriving one a second, at most 70 output tokens, models Llama-3.2-1B and Qwen-2.5-3B;
default (930.75 MHz, batch 28), grid search, and Camel's Thompson sampling. ``ts`` is Camel's
own bandit (one context); ``camel`` is camel-vllm's contextual version. The oracle (best static
arm in hindsight) is shown for reference.

One difference: Camel batched statically (waited for the batch to fill); this simulator
models vLLM's continuous batching, where the batch cap bounds admission. All energy is
emulated (calibrated roofline model of the board), not measured.

    python benchmarks/camel_repro.py [--requests 1000] [--seed 0] [--seeds 8] [--out results/camel_repro]

``--seeds K`` repeats the bandits (ts, camel) on seeds 1..K-1 (new requests, new device noise)
and prints each policy's reduction against default as a mean over the K seeds with its standard
error across seeds (written to ``seeds.json``): one seed's figure moves by about a point.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from camel_vllm.bench.results import format_table, reduction_pct
from camel_vllm.bench.sim import SimSetup, bench, parse_policies
from camel_vllm.cli.deprecated import add_deprecated_alias
from camel_vllm.traces import alpaca_like

MODELS = ("llama-3.2-1b", "qwen-2.5-3b")
POLICIES = "default,grid,ts,camel,oracle"
PAPER_RANGE = "12.4% to 29.9%"
SEEDED = ("ts", "camel")


def _stderr_pct(details: dict) -> float:
    """The paired batch-means standard error of the change against default (camel_vllm.bench.paired)."""
    return float(details["edp_vs_default"]["stderr_pct"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1,
                        help="also average ts and camel over this many seeds (seed, seed+1, ...)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--device-profile", default="orin-agx-32gb",
                        help="emulated board (default orin-agx-32gb; orin-agx-32gb-roofline: the first profile)")
    add_deprecated_alias(parser, "--device", "--device-profile")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/camel_repro", help="folder for JSON results")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    os.makedirs(args.out, exist_ok=True)
    def trace_for(seed: int):
        return alpaca_like(args.requests, rate_per_s=1.0, seed=seed, max_output_tokens=70)

    trace = trace_for(args.seed)
    rows = []
    per_seed: dict[tuple[str, str], list[float]] = {}
    for model in args.models.split(","):
        setup = SimSetup.make(device_profile=args.device_profile, model_profile=model, seed=args.seed)
        t0 = time.perf_counter()
        out = bench(setup, parse_policies(POLICIES), trace, workers=args.workers)
        wall = time.perf_counter() - t0
        out.result.notes.append("Camel batched statically; this is vLLM continuous batching "
                                "(batch cap = admission cap)")
        out.result.write(os.path.join(args.out, f"{model}.json"))
        print(format_table(out.result))
        print(f"  ({wall:.0f} s wall; oracle arm {out.result.details['oracle']['arm']})\n")
        p = out.result.policies
        for name in SEEDED:
            per_seed[(model, name)] = [reduction_pct(p[name].mean_edp_js, p["default"].mean_edp_js)]
        for seed in range(args.seed + 1, args.seed + args.seeds):
            more = bench(SimSetup.make(device_profile=args.device_profile, model_profile=model, seed=seed),
                         parse_policies("default," + ",".join(SEEDED)),
                         trace_for(seed),
                         workers=args.workers).result.policies
            for name in SEEDED:
                per_seed[(model, name)].append(reduction_pct(more[name].mean_edp_js, more["default"].mean_edp_js))
        for name in ("grid", "ts", "camel"):
            d = out.result.details[name]
            rows.append((model, name, p[name].mean_edp_js, p[name].energy_j, p[name].mean_latency_s,
                         reduction_pct(p[name].mean_edp_js, p["default"].mean_edp_js), _stderr_pct(d),
                         reduction_pct(p[name].mean_edp_js, p["grid"].mean_edp_js),
                         d["settled_after_requests"], d["final_arm"]))
        rows.append((model, "oracle", p["oracle"].mean_edp_js, p["oracle"].energy_j, p["oracle"].mean_latency_s,
                     reduction_pct(p["oracle"].mean_edp_js, p["default"].mean_edp_js),
                     _stderr_pct(out.result.details["oracle"]),
                     reduction_pct(p["oracle"].mean_edp_js, p["grid"].mean_edp_js), 0,
                     out.result.details["oracle"]["arm"]))
        rows.append((model, "default", p["default"].mean_edp_js, p["default"].energy_j, p["default"].mean_latency_s,
                     0.0, 0.0, reduction_pct(p["default"].mean_edp_js, p["grid"].mean_edp_js), 0, "930.75/28"))
    print(f"Camel's experiment, emulated {args.device_profile}, {args.requests} Alpaca-like requests at 1 req/s, "
          f"<= 70 output tokens (paper: {PAPER_RANGE} lower EDP than default). ALL FIGURES EMULATED.")
    print(f"{'model':<14}{'policy':<9}{'mean_EDP_Js':>12}{'energy_J':>11}{'mean_lat_s':>11}"
          f"{'lower_than_default':>20}{'vs_grid':>9}{'settled_after':>14}  final_arm")
    for model, name, edp, e, lat, vd, se, vg, settled, arm in rows:
        s = "never" if settled is None else str(settled)
        print(f"{model:<14}{name:<9}{edp:>12.3f}{e:>11.0f}{lat:>11.3f}{f'{vd:.1f}% +- {se:.1f}':>20}{vg:>8.1f}%"
              f"{s:>14}  {arm}")
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as fh:
        keys = ("model", "policy", "mean_edp_js", "energy_j", "mean_latency_s", "reduction_vs_default_pct",
                "reduction_vs_default_stderr_pct", "reduction_vs_grid_pct", "settled_after_requests", "final_arm")
        json.dump([dict(zip(keys, r, strict=False)) for r in rows], fh, indent=2)
    if args.seeds > 1:
        _report_seeds(per_seed, args)
    return 0


def _report_seeds(per_seed: dict[tuple[str, str], list[float]], args: argparse.Namespace) -> None:
    """Print and write each bandit's reduction against default, mean and standard error over seeds."""
    seeds = list(range(args.seed, args.seed + args.seeds))
    print(f"\nOver seeds {seeds[0]}..{seeds[-1]} (EMULATED): reduction of mean EDP against default, "
          "mean +- standard error across seeds")
    summary = []
    for (model, name), values in per_seed.items():
        arr = np.asarray(values)
        se = float(arr.std(ddof=1) / np.sqrt(arr.size))
        print(f"{model:<14}{name:<9}{arr.mean():>6.1f}% +- {se:.1f}   (per seed: "
              + ", ".join(f"{v:.1f}" for v in arr) + ")")
        summary.append({"model": model, "policy": name, "seeds": seeds, "reduction_vs_default_pct": values,
                        "mean_pct": float(arr.mean()), "stderr_pct": se})
    with open(os.path.join(args.out, "seeds.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
