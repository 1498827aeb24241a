"""Assign a trace's requests to devices minimising energy and runtime (exact MILP, Wilkins et al.).

Each ``--models`` file is a fitted model (``camel-vllm fit-energy-model --json``) of one
device; the assignment minimises zeta * normalised energy + (1 - zeta) * normalised runtime
with a minimum share per device, and is compared with round-robin, random and each device
alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from camel_vllm.cli import checks
from camel_vllm.offline.energy_model import POOLED, EnergyModel
from camel_vllm.offline.planning import DeviceModel, PlanResult, plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", required=True, help="fitted model JSON files, one per device")
    parser.add_argument("--trace", required=True, help="trace file (Azure CSV, Mooncake, BurstGPT, timed_trace)")
    parser.add_argument("--zeta", type=float, required=True, help="weight of energy in [0, 1] (runtime: 1 - zeta)")
    parser.add_argument("--min-share", type=float, default=0.1, help="minimum share of requests per device")
    parser.add_argument("--requests", type=int, help="use the first N requests of the trace")
    parser.add_argument("--arm", help="arm label to plan with on every device (default: each model's busiest "
                                      f"arm; '{POOLED}' = the pooled fit)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    parser.add_argument("--json", dest="json_out", help="write the result here")


def load_device_models(paths: list[str], arm: str | None) -> list[DeviceModel]:
    models: list[DeviceModel] = []
    for path in paths:
        fitted = EnergyModel.load(path)
        label = arm or fitted.busiest_arm()
        name = fitted.device_profile or os.path.splitext(os.path.basename(path))[0]
        if any(m.name == name for m in models):
            name = f"{name}#{len(models)}"
        models.append(DeviceModel(name=name, fit=fitted.fit_for(label), arm=label, emulated=fitted.emulated))
    return models


def run(args: argparse.Namespace) -> int:
    from camel_vllm.traces import load_trace

    try:
        for path in args.models:
            checks.input_file("--models", path)
        checks.number("--min-share", args.min_share, minimum=0.0, maximum=1.0)
        checks.number("--seed", args.seed, minimum=0)
        if args.json_out:
            checks.output_file("--json", args.json_out)
        models = load_device_models(args.models, args.arm)
        trace = load_trace(args.trace, requests=args.requests)
        tokens = [(r.prompt_tokens, r.output_tokens) for r in trace.requests]
        result = plan(models, tokens, zeta=args.zeta, min_share=args.min_share, seed=args.seed)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        print(f"camel-vllm plan: {err}", file=sys.stderr)
        return 2
    print(format_result(result, models, trace_name=os.path.basename(args.trace)))
    if args.json_out:
        data = result.to_dict()
        data["trace"] = os.path.basename(args.trace)
        data["arms"] = {m.name: m.arm for m in models}
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json_out}")
    return 0


def format_result(result: PlanResult, models: list[DeviceModel], *, trace_name: str) -> str:
    tag = " (EMULATED models)" if result.emulated else ""
    devices = ", ".join(f"{m.name} @ {m.arm}" for m in models)
    lines = [
        f"plan: {result.requests} requests of {trace_name} over {devices}{tag}",
        f"zeta {result.zeta} (energy weight), min share {result.min_share}",
        f"{'method':>24} {'energy_j':>12} {'runtime_s':>12} {'objective':>10}  requests per device",
    ]
    for name, a in result.assignments.items():
        per = ", ".join(f"{k}={v}" for k, v in a.requests_per_device.items())
        lines.append(f"{name:>24} {a.energy_j:12.1f} {a.runtime_s:12.1f} {a.objective:10.4f}  {per}")
    lines.append(f"milp energy vs round-robin: {100 * result.saving_vs('round-robin'):+.1f}% saved; "
                 f"vs random: {100 * result.saving_vs('random'):+.1f}% saved")
    return "\n".join(lines)
