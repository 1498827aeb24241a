"""How much could a contextual policy win over the best static arm on a trace? (emulated)

Issue 6 asks contextual camel to beat the best static arm on the Azure code trace. This
script measures what there is to win, with hindsight: it runs every static arm (the
``oracle`` sweep of ``camel-vllm bench sim``) and a family of hand-made contextual rules,

    arm LOW while at most K requests are in the engine (running + waiting) at a decision,
    the best static arm otherwise,

for every LOW arm, every K in ``--demand`` and every epoch length in ``--epochs`` (iterations
an arm is held), on the same requests and the same emulated device as ``bench sim``. The best
rule against the best static arm is what a policy keyed on the engine's demand can win at
least, had it known the answer in advance (one family of rules: not a bound on every contextual
policy); a learning policy pays for exploration on top. All energy, and so all EDP, is emulated
(calibrated roofline and power model of the board).

    python benchmarks/contextual_headroom.py --trace camel_vllm/data/traces/azure_code_first2000.csv \
        --target-rps 0.2 --json benchmarks/results/headroom/azure_code_02rps.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from camel_vllm.cli.deprecated import add_deprecated_alias
from camel_vllm.bench.sim import (
    PolicySpec, SimSetup, emulated_device, arm_set, mean_edp_js, run_static_sweep, static_specs,
)
from camel_vllm.cli.trace_args import add_trace_arguments, trace_from_args
from camel_vllm.control.controller import Controller
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import make_cost
from camel_vllm.devices.emulator.profiles import load_model_profile
from camel_vllm.policies.baselines import EmpiricalPolicy
from camel_vllm.policies.decision import DecisionInput
from camel_vllm.sim.engine import SimEngine, VirtualClock
from camel_vllm.traces import Trace


class DemandRulePolicy(EmpiricalPolicy):
    """Arm ``low`` while at most ``max_demand`` requests are in the engine, else ``high``.

    A fixed rule: it reads the engine's demand from the snapshot the controller shows it before
    each decision; the costs it is given only feed the per-arm means it reports.
    """

    name = "demand-rule"

    def __init__(self, num_arms: int, *, low: int, high: int, max_demand: int) -> None:
        super().__init__(num_arms, np.random.default_rng(0))
        self.low, self.high, self.max_demand = low, high, max_demand

    def select(self, decision: DecisionInput) -> int:
        snapshot = decision.snapshot
        demand = 0 if snapshot is None else snapshot.num_running + snapshot.num_waiting
        return self.low if demand <= self.max_demand else self.high


@dataclass(frozen=True)
class RuleRun:
    low: str
    high: str
    max_demand: int
    epoch_iterations: int
    mean_edp_js: float
    low_share: float  # fraction of decisions (not of time) that chose the low arm


def run_rule(setup: SimSetup, trace: Trace, low: int, high: int, max_demand: int, epoch_iterations: int) -> RuleRun:
    """One rule on the trace, on a fresh emulated device (same noise seed as every run)."""
    config = setup.config_for(PolicySpec("rule", "default", {})).replace(epoch_iterations=epoch_iterations)
    arms = arm_set(setup)
    clock = VirtualClock()
    policy = DemandRulePolicy(len(arms), low=low, high=high, max_demand=max_demand)
    controller = Controller(
        arms=arms, policy=policy, device=emulated_device(config, clock), cost=make_cost(config.cost, config.alpha),
        context_model=ContextModel(contextual=False, max_batch=max(arms.batch_sizes)),
        epoch_iterations=epoch_iterations,
    )
    try:
        run = SimEngine(controller, clock, trace.requests, setup.engine).run()
    finally:
        controller.close()
    low_decisions = sum(1 for _, arm in run.decisions if arm == low)
    return RuleRun(
        low=arms[low].label, high=arms[high].label, max_demand=max_demand, epoch_iterations=epoch_iterations,
        mean_edp_js=mean_edp_js(run), low_share=low_decisions / max(1, len(run.decisions)),
    )


@dataclass(frozen=True)
class EdpSpread:
    """How noisy one run's mean EDP is as an estimate, and how few requests decide it.

    ``stderr_js`` is the standard error of the mean over requests taken as independent (a
    learner that compares arms sees no less noise than this); ``top_share`` is the share of the
    run's summed EDP carried by its ``top_count`` largest requests (the top 1%).
    """

    requests: int
    mean_edp_js: float
    cv: float
    stderr_js: float
    top_count: int
    top_share: float

    @classmethod
    def of(cls, edp_js: Sequence[float], top_fraction: float = 0.01) -> "EdpSpread":
        x = np.asarray(edp_js, dtype=float)
        mean, sd = float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0
        if mean <= 0.0:
            raise ValueError("EdpSpread needs a positive mean EDP")
        top_count = max(1, int(round(top_fraction * x.size)))
        top = np.sort(x)[::-1][:top_count]
        return cls(requests=int(x.size), mean_edp_js=mean, cv=sd / mean, stderr_js=sd / np.sqrt(x.size),
                   top_count=top_count, top_share=float(top.sum() / x.sum()))


def _rule_task(task: tuple[SimSetup, Trace, int, int, int, int]) -> RuleRun:
    return run_rule(*task)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_trace_arguments(parser)
    parser.add_argument("--device-profile", default="orin-agx-32gb", help="emulated device profile")
    parser.add_argument("--model-profile", default="llama-3.2-1b", help="model profile")
    add_deprecated_alias(parser, "--device", "--device-profile")
    add_deprecated_alias(parser, "--model", "--model-profile")
    parser.add_argument("--seed", type=int, default=0, help="emulator noise seed")
    parser.add_argument("--demand", default="1,2", help="K values: requests in the engine for the low arm")
    parser.add_argument("--epochs", default="4,16,64", help="epoch lengths (iterations) to try")
    parser.add_argument("--workers", type=int, default=2, help="simulator processes in parallel")
    parser.add_argument("--json", default=None, help="write every run here")
    args = parser.parse_args(argv)
    try:
        demands = [int(k) for k in args.demand.split(",")]
        epochs = [int(e) for e in args.epochs.split(",")]
    except ValueError as err:
        print(f"contextual_headroom: --demand and --epochs take comma-separated integers ({err})", file=sys.stderr)
        return 2
    if args.requests is None:
        args.requests = 2000
    trace = trace_from_args(args, max_context_tokens=load_model_profile(args.model_profile).max_context_tokens)
    setup = SimSetup.make(device_profile=args.device_profile, model_profile=args.model_profile, seed=args.seed)
    arms = arm_set(setup)
    t0 = time.monotonic()
    statics = run_static_sweep(setup, static_specs(arms), trace, workers=args.workers)
    static_runs = {run.arm_labels[max(range(len(run.pulls)), key=run.pulls.__getitem__)]: run
                   for run in statics.values()}
    static_edp = {label: mean_edp_js(run) for label, run in static_runs.items()}
    best_label = min(static_edp, key=static_edp.__getitem__)
    best_run = static_runs[best_label]
    best = [a.label for a in arms.arms].index(best_label)
    tasks = [(setup, trace, low, best, k, e)
             for e in epochs for k in demands for low in range(len(arms)) if low != best]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(max(1, args.workers)) as pool:
        rules = pool.map(_rule_task, tasks)
    elapsed_s = time.monotonic() - t0
    rules.sort(key=lambda r: r.mean_edp_js)
    best_static = static_edp[best_label]
    print(f"trace {args.trace} ({len(trace)} requests, target {args.target_rps} req/s), device {args.device_profile} "
          f"(EMULATED), model {args.model_profile}, seed {args.seed}; {len(statics)} static + {len(rules)} rule runs "
          f"in {elapsed_s:.0f} s")
    print(f"best static arm {best_label}: mean EDP {best_static:.1f} J*s (emulated)")
    spread = EdpSpread.of([r.edp_js for r in best_run.records])
    within = sorted(label for label, edp in static_edp.items()
                    if label != best_label and edp - best_static <= spread.stderr_js)
    print(f"its per-request EDP: coefficient of variation {spread.cv:.2f}, standard error of the mean "
          f"{spread.stderr_js:.1f} J*s ({spread.stderr_js / best_static:.1%}); the top 1% of requests "
          f"({spread.top_count}) carry {spread.top_share:.1%} of the summed EDP; {len(within)} other static arms "
          f"are within one standard error of it: {', '.join(within)}")
    print("| rule (low arm while demand <= K, else best static) | epoch iters | low share | mean EDP J*s "
          "| vs best static |")
    print("|---|---|---|---|---|")
    for r in rules[:8]:
        print(f"| {r.low} while <= {r.max_demand}, else {r.high} | {r.epoch_iterations} | {r.low_share:.0%} | "
              f"{r.mean_edp_js:.1f} | {100 * (r.mean_edp_js / best_static - 1):+.1f}% |")
    for e in epochs:
        best_e = min((r for r in rules if r.epoch_iterations == e), key=lambda r: r.mean_edp_js)
        print(f"best rule at {e} iterations per epoch: {best_e.mean_edp_js:.1f} "
              f"({100 * (best_e.mean_edp_js / best_static - 1):+.1f}% vs best static)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        out = {
            "trace": args.trace, "target_rps": args.target_rps, "requests": len(trace), "device": args.device_profile,
            "model": args.model_profile, "seed": args.seed, "emulated": True, "best_static": {"arm": best_label,
            "mean_edp_js": best_static, "edp_spread": spread.__dict__, "within_one_stderr": within},
            "static_mean_edp_js": static_edp,
            "rules": [r.__dict__ for r in rules],
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
