"""Shared pieces of the metrics tests (no tests here): a real controller on a fake clock, scraping.

The controller is the real one (real ArmSet, Thompson policy from make_policy, emulated
Orin device, log-EDP cost, contextual ContextModel); only the engine is replaced by a loop
that admits requests up to the arm's batch cap, prefills, decodes and finishes them.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from camel_vllm.control.controller import Controller
from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import make_cost
from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork
from camel_vllm.devices.emulator.device import EmulatedDevice
from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile
from camel_vllm.policies.registry import make_policy

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "camel-dashboard.json"
#: Iteration wall time on the fake clock (s): the order of a decode step on AGX Orin.
STEP_S = 0.05


@dataclass
class FakeClock:
    t: float = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Rig:
    """A controller, its clock and the requests it finished (count of outcomes)."""

    controller: Controller
    clock: FakeClock
    finished: int = 0
    next_id: int = 0
    outcomes: list = field(default_factory=list)


def make_rig(
    *, freqs_mhz: Iterable[float] = (306.0, 612.0, 930.75), batch_sizes: Iterable[int] = (2, 4),
    policy: str = "camel", policy_params: dict | None = None, contextual: bool = True, seed: int = 0,
    device=None, prefill_mhz: Iterable[float] = (),
) -> Rig:
    clock = FakeClock()
    if device is None:
        device = emulated_device(clock, seed)
    elif callable(device) and not hasattr(device, "info"):
        device = device(clock)
    if policy_params is None and policy == "camel":  # the model-based policy, warm after a few requests
        policy_params = {"warmup_iterations": 4, "warmup_requests": 2}
    config = CamelConfig(
        device="emulated", policy=policy, policy_params=policy_params or {}, contextual=contextual, seed=seed,
    )
    arms = ArmSet.product([f * 1e6 for f in freqs_mhz], batch_sizes, [f * 1e6 for f in prefill_mhz])
    context_model = ContextModel(contextual=contextual, max_batch=max(arms.batch_sizes))
    controller = Controller(
        arms=arms,
        policy=make_policy(config, arms, num_contexts=context_model.num_contexts),
        device=device,
        cost=make_cost("edp"),
        context_model=context_model,
        epoch_iterations=2,
    )
    return Rig(controller=controller, clock=clock)


def emulated_device(clock: FakeClock, seed: int = 0) -> EmulatedDevice:
    return EmulatedDevice(
        load_device_profile("orin-agx-32gb"), load_model_profile("llama-3.2-1b"), clock=clock, seed=seed,
    )


def drive(rig: Rig, num_requests: int, *, prompt_tokens: int = 32, output_tokens: int = 5) -> None:
    """Serve ``num_requests`` requests that all arrive now, under the controller's batch caps."""
    c, clock = rig.controller, rig.clock
    pending: list[tuple[str, float]] = []
    for _ in range(num_requests):
        rid = f"r{rig.next_id}"
        rig.next_id += 1
        c.request_arrived(rid, clock.t, prompt_tokens)
        pending.append((rid, clock.t))
    running: dict[str, list[float]] = {}  # id -> [arrival, tokens left, first token time]
    while pending or running:
        snapshot = EngineSnapshot(
            now_s=clock.t, num_running=len(running), num_waiting=len(pending),
            waiting_prompt_tokens=prompt_tokens * len(pending),
        )
        arm = c.begin_iteration(snapshot)
        tokens: dict[str, int] = {}
        for rid in running:
            tokens[rid] = 1
        while pending and len(running) < arm.max_batch:
            rid, arrival = pending.pop(0)
            running[rid] = [arrival, float(output_tokens), -1.0]
            tokens[rid] = prompt_tokens
        prefill = sum(t for t in tokens.values() if t > 1)
        work = IterationWork(
            tokens_by_request=tokens, num_prefill_tokens=prefill,
            num_decode_tokens=sum(1 for t in tokens.values() if t == 1),
            context_tokens=prompt_tokens * len(tokens),
        )
        c.step_frequency(work)  # as an adapter does between forming the step and running it
        clock.t += STEP_S
        clock.t += c.end_iteration(clock.t, work)
        for rid in list(tokens):
            state = running[rid]
            if state[2] < 0:
                state[2] = clock.t
            state[1] -= 1
            if state[1] <= 0:
                del running[rid]
                outcome = c.request_finished(FinishedRequest(
                    request_id=rid, arrival_s=state[0], finish_s=clock.t,
                    prompt_tokens=prompt_tokens, output_tokens=output_tokens, first_token_s=state[2],
                ))
                if outcome is not None:
                    rig.finished += 1
                    rig.outcomes.append(outcome)
        clock.t += 0.01  # scheduler gap: idle energy, charged to no request


# ---------------------------------------------------------------------- scraping
def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def samples(text: str, prefix: str = "camel_") -> dict[str, list[Sample]]:
    """Sample name -> samples, for families whose name starts with ``prefix``."""
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix):
            continue
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def families(text: str, prefix: str = "camel_") -> dict[str, str]:
    """Family name -> type."""
    return {f.name: f.type for f in text_string_to_metric_families(text) if f.name.startswith(prefix)}


def total(found: dict[str, list[Sample]], name: str, **match: str) -> float:
    return sum(s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in match.items()))


def one(found: dict[str, list[Sample]], name: str, **match: str) -> Sample:
    hits = [s for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, f"{name} {match}: {hits}"
    return hits[0]


# --------------------------------------------------------------------- dashboard
_METRIC_RE = re.compile(r"\b(camel_[a-z0-9_]+|vllm:[a-z0-9_:]+)")


def dashboard_exprs(dashboard: dict) -> list[str]:
    """Every PromQL expression in a Grafana dashboard (panel targets and template queries)."""
    exprs: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    exprs.append(value)
                elif key == "query" and isinstance(value, (str, dict)):
                    text = value if isinstance(value, str) else value.get("query", "")
                    if isinstance(text, str) and ("camel_" in text or "vllm:" in text):
                        exprs.append(text)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return exprs


def metric_names(expr: str) -> set[str]:
    return set(_METRIC_RE.findall(expr))
