"""The simulation helpers of ``benchmarks/seed_systems.py``: configurations, arms and one run
of a trace on a fresh emulated device (every figure EMULATED)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from camel_vllm.bench.sim import SimSetup, emulated_device
from camel_vllm.control.controller import Controller
from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import make_cost
from camel_vllm.policies.slo.policy import SLOPolicy
from camel_vllm.sim.engine import EngineConfig, SimEngine, SimRun, VirtualClock
from camel_vllm.telemetry.reqlog import RequestLog
from camel_vllm.traces.base import Trace, TraceRequest
from camel_vllm.wiring.build import EngineLimits, build_controller, resolve_batch_sizes, resolve_frequencies_hz

AZURE_CONV = "/work/shared/traces/azure2023_AzureLLMInferenceTrace_conv.csv"
DEVICES = ("orin-agx-32gb", "orin-agx-64gb")
MODEL = "llama-3.2-1b"
ZETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Arms profiled for the fit, as (fraction of the device's frequency list, batch cap).
FIT_ARMS = ((1.0, 28), (0.6, 16), (0.3, 8))


@dataclass
class RunOut:
    run: SimRun
    controller: Controller


def setup_config(device: str, *, seed: int = 0, **changes: Any) -> CamelConfig:
    return SimSetup.make(device_profile=device, model_profile=MODEL, seed=seed,
                         base=CamelConfig().replace(**changes)).config


def arms_of(config: CamelConfig, engine: EngineConfig) -> ArmSet:
    device = emulated_device(config, VirtualClock())
    return ArmSet.product(resolve_frequencies_hz(config, device),
                          resolve_batch_sizes(config, EngineLimits(engine.max_num_seqs)))


def simulate(config: CamelConfig, trace: Trace | Sequence[TraceRequest], *, engine: EngineConfig = EngineConfig(),
             pure_slo: bool = False, log_path: str | None = None, prior: tuple[list[float], float] | None = None
             ) -> RunOut:
    """One run on a fresh emulated device; ``pure_slo`` = the SLO policy with no inner policy."""
    requests = trace.requests if isinstance(trace, Trace) else list(trace)
    clock = VirtualClock()
    device = emulated_device(config, clock)
    if pure_slo:
        arms = arms_of(config, engine)
        ctx = ContextModel(contextual=config.contextual, max_batch=max(arms.batch_sizes))
        ctl = Controller(arms=arms, policy=SLOPolicy(config, arms, ctx.num_contexts, None), device=device,
                         cost=make_cost(config.cost, config.alpha), context_model=ctx,
                         epoch_iterations=config.epoch_iterations, epoch_s=config.epoch_s or 0.0)
    else:
        ctl = build_controller(config, EngineLimits(engine.max_num_seqs), device=device, clock=clock,
                               with_metrics=False)
    if prior is not None:
        ctl.policy.set_prior_means(prior[0], prior[1])
    if log_path:
        ctl.listeners.append(RequestLog(log_path, device_info=device.info(),
                                        arm_labels=[a.label for a in ctl.arms.arms]))
    try:
        run = SimEngine(ctl, clock, requests, engine).run()
    finally:
        ctl.close()
    return RunOut(run, ctl)


def static_arm(arms: ArmSet, frac: float, batch: int) -> tuple[float, int]:
    freqs = [f for f in arms.frequencies_hz if f is not None]
    f = freqs[min(len(freqs) - 1, int(round(frac * (len(freqs) - 1))))]
    return f / 1e6, batch


def steady_state(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop a batch job's drain: requests finishing after the last first token of the run.

    Once the queue is empty the batch shrinks and the last requests decode nearly alone,
    paying whole iterations: not the saturated regime the model describes.
    """
    last_first_s = max(r["first_token_s"] for r in records if r["first_token_s"] is not None)
    return [r for r in records if r["finish_s"] <= last_first_s]


def offline(trace: Trace) -> list[TraceRequest]:
    """Every request queued at t=0 (an offline batch job)."""
    return [TraceRequest(r.request_id, 0.0, r.prompt_tokens, r.output_tokens) for r in trace.requests]
