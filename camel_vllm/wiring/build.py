"""Wiring: build a ready controller (device, arms, policy, cost, listeners) from a config.

The vLLM scheduler and the simulator both call :func:`build_controller`, so a configuration
behaves the same in both. Every check that needs the device or the engine's limits is made
here and raises :class:`~camel_vllm.core.config.ConfigError` (one line naming key and value).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from camel_vllm.control.controller import Controller, ControllerListener
from camel_vllm.core.arms import CAMEL_BATCH_SIZES, ArmSet, same_frequency
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import make_cost
from camel_vllm.devices.base import Device

logger = logging.getLogger("vllm.camel")

#: Policy credits handed over per engine iteration (Controller ``observe_budget``): ~11 us
#: each for camel (benchmarks/overhead.py), so at most ~45 us of learning per step, far
#: above the mean rate (a request gives ~2 credits; even at 1 req/s a step finishes < 0.1).
OBSERVE_BUDGET_PER_ITERATION = 4


@dataclass(frozen=True)
class EngineLimits:
    """Limits fixed at engine start-up that arms must respect.

    ``max_num_seqs`` is vLLM's ``--max-num-seqs`` (vLLM sizes its model-runner buffers and
    scheduler assertions from it at start-up, so a batch cap above it is rejected).
    """

    max_num_seqs: int
    #: vLLM's ``--max-num-batched-tokens``: tokens one step may schedule (None: not known; the
    #: model-based policy then takes the largest prefill chunk it has seen).
    max_num_batched_tokens: int | None = None
    #: vLLM's admission cap ``--max-num-active-seqs`` (``SchedulerConfig.max_num_active_seqs``,
    #: at most ``max_num_seqs``; vLLM 0.33 also lowers it itself for some speculative decoding
    #: methods). None: not set, the cap is ``max_num_seqs``.
    max_num_active_seqs: int | None = None

    @property
    def batch_ceiling(self) -> int:
        """The largest batch cap an arm may have: requests stock vLLM lets run at once."""
        if self.max_num_active_seqs is None:
            return self.max_num_seqs
        return min(self.max_num_seqs, self.max_num_active_seqs)

    @property
    def ceiling_flag(self) -> str:
        """The vLLM flag that sets :attr:`batch_ceiling` (named in errors)."""
        if self.max_num_active_seqs is not None and self.max_num_active_seqs <= self.max_num_seqs:
            return "--max-num-active-seqs"
        return "--max-num-seqs"


def resolve_batch_sizes(config: CamelConfig, limits: EngineLimits) -> list[int]:
    """``auto``: caps that end at the engine's admission cap (:attr:`EngineLimits.batch_ceiling`:
    ``--max-num-active-seqs`` when set, else ``--max-num-seqs``), so the largest arm (the
    ``default`` policy's) admits what stock vLLM admits and no arm above it duplicates it.

    Up to 28: Camel's 4..28 clipped to the cap, plus the cap itself. Above:
    Camel's seven evenly spaced caps scaled to it, ``round(k * cap / 7)`` for k = 1..7
    (at 28 this is Camel's grid; at vLLM's GPU default of 256: 37, 73, ..., 256). Camel's
    own grid stays available as ``batch_sizes: [4, 8, 12, 16, 20, 24, 28]``. A listed size
    above the cap is an error naming the flag that set it.
    """
    top = limits.batch_ceiling
    if config.batch_sizes == "auto":
        if top > CAMEL_BATCH_SIZES[-1]:
            steps = len(CAMEL_BATCH_SIZES)
            return sorted({max(1, round(k * top / steps)) for k in range(1, steps + 1)})
        sizes = [b for b in CAMEL_BATCH_SIZES if b <= top]
        sizes.append(top)
        return sorted(set(sizes))
    for size in config.batch_sizes:
        if size > top:
            raise ConfigError(
                "batch_sizes", list(config.batch_sizes),
                f"{size} is above {limits.ceiling_flag} {top}",
            )
    return sorted(set(int(b) for b in config.batch_sizes))


#: ``frequencies_mhz: auto`` takes at most this many clocks (a Jetson's 7-13 steps all; an H100's
#: 110 NVML steps would make 770 arms, most of them a step apart: exploration spent on
#: neighbours that cost the same, and a decision that projects them all).
MAX_AUTO_CLOCKS = 12
#: ... spread evenly from the top clock down to this share of it: the span of Camel's grid on the
#: AGX Orin 32GB (306 / 930.75 MHz, arXiv 2508.09173). Lower clocks only slow a GPU whose decode is
#: memory-bound without saving energy (docs/devices.md).
AUTO_LOWEST_SHARE = 1.0 / 3.0


def auto_frequencies_hz(offered: Sequence[float]) -> list[float]:
    """Every offered clock, or when there are more than MAX_AUTO_CLOCKS, the offered steps
    nearest MAX_AUTO_CLOCKS evenly spaced clocks from the top down to AUTO_LOWEST_SHARE of it."""
    offered = sorted(offered)
    if len(offered) <= MAX_AUTO_CLOCKS:
        return list(offered)
    top = offered[-1]
    low = min((f for f in offered if f >= AUTO_LOWEST_SHARE * top), default=offered[0])
    picked = {min(offered, key=lambda f: abs(f - (low + (top - low) * k / (MAX_AUTO_CLOCKS - 1))))
              for k in range(MAX_AUTO_CLOCKS)}
    return sorted(picked)


def resolve_frequencies_hz(config: CamelConfig, device: Device) -> list[float | None]:
    """``auto``: the device's clocks (at most MAX_AUTO_CLOCKS, see :func:`auto_frequencies_hz`);
    a list must name offered frequencies.

    A device without a settable clock (read-only mode, ``device: none``) gives ``[None]``:
    batch-only arms.
    """
    offered = sorted(device.available_frequencies_hz())
    writable = device.info().can_set_frequency and not config.read_only
    if config.frequencies_mhz == "auto":
        auto: list[float | None] = list(auto_frequencies_hz(offered)) if offered and writable else [None]
        return auto
    if not offered:
        raise ConfigError(
            "frequencies_mhz", list(config.frequencies_mhz),
            f"device '{device.info().kind}' has no settable frequencies",
        )
    chosen: list[float | None] = []
    for mhz in config.frequencies_mhz:
        match = min(offered, key=lambda f: abs(f - mhz * 1e6))
        if not same_frequency(match, mhz * 1e6):
            listing = ", ".join(f"{f / 1e6:g}" for f in offered)
            raise ConfigError(
                "frequencies_mhz", list(config.frequencies_mhz),
                f"{mhz:g} MHz is not offered by device '{device.info().kind}' (it offers {listing})",
            )
        chosen.append(match)
    return chosen if writable else [None]


def build_controller(
    config: CamelConfig,
    limits: EngineLimits,
    *,
    device: Device | None = None,
    clock: Callable[[], float] | None = None,
    extra_listeners: Sequence[ControllerListener] = (),
    with_metrics: bool = True,
) -> Controller:
    """Open the device (unless given), resolve arms, make the policy, load state, add listeners.

    ``clock`` drives the emulated device (vLLM: ``time.monotonic``; simulator: virtual time).
    """
    from camel_vllm.devices.registry import make_device
    from camel_vllm.policies.registry import cadence_of, make_policy, prefill_clocks_hz

    if device is None:
        device = make_device(config, clock=clock)
    try:
        cadence = cadence_of(config)
        freqs = resolve_frequencies_hz(config, device)
        arms = ArmSet.product(freqs, resolve_batch_sizes(config, limits), prefill_clocks_hz(config, freqs))
        context_model = ContextModel(contextual=config.contextual, max_batch=max(arms.batch_sizes))
        policy = make_policy(config, arms, num_contexts=context_model.num_contexts,
                             token_budget=limits.max_num_batched_tokens,
                             switch_latency_s=device.info().switch_latency_s)
        listeners: list[ControllerListener] = list(extra_listeners)
        state_store = None
        if config.state_path:
            from camel_vllm.control.state import PolicyStateStore

            state_store = PolicyStateStore(config.state_path, config=config, arms=arms, device_info=device.info())
            state_store.load_into(policy)
        if config.request_log:
            from camel_vllm.telemetry.reqlog import RequestLog

            listeners.append(
                RequestLog(config.request_log, device_info=device.info(), arm_labels=[a.label for a in arms.arms])
            )
        controller = Controller(
            arms=arms,
            policy=policy,
            device=device,
            cost=make_cost(config.cost, config.alpha),
            context_model=context_model,
            epoch_iterations=config.epoch_iterations,
            epoch_s=config.epoch_s if config.epoch_s is not None else cadence.epoch_s,
            batch_only=arms.frequencies_hz == (None,),
            listeners=listeners,
            state_store=state_store,
            state_save_every=config.state_save_every,
            observe_budget=OBSERVE_BUDGET_PER_ITERATION,
            cadence=cadence,
        )
        if with_metrics and config.metrics_port is not None:
            from camel_vllm.telemetry.metrics import MetricsExporter

            controller.listeners.append(MetricsExporter.start(config, controller))
        _report_start(config, device, controller)
        return controller
    except BaseException:
        device.close()
        raise


def _report_start(config: CamelConfig, device: Device, controller: Controller) -> None:
    """One line for what the user must know at start: a clock this process cannot write
    (counted as ``camel_device_errors_total{kind="permission"}``), or no energy measurement."""
    info = device.info()
    problem = info.extra.get("clock_write_problem")
    if problem and not config.read_only and device.available_frequencies_hz():
        controller.report_device_error("permission", f"camel: {problem}; continuing with batch-only arms")
    if info.energy_source == "none":
        logger.info("camel: device %s measures no energy: requests are served and reported, and the policy "
                    "learns nothing (no cost is computed from 0 J)", info.name)
