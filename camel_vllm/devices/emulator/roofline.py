"""The emulator's roofline model: time and power of one engine iteration at a GPU clock.

Per iteration at GPU frequency ``f`` (:class:`PerformanceModel`):

- bytes moved = weights (read once per iteration) + KV cache read by decode tokens
  (``context_tokens`` x KV bytes per token) + KV written for every new token;
- FLOPs = 2 x params x tokens + attention (4 x layers x hidden x query x key tokens);
- time = max(memory time, compute time) + a fixed launch overhead, where compute time is
  FLOPs / (peak x f / f_max) and memory time is bytes over the *effective* bandwidth: the
  DRAM limit and the bytes the SMs can request per clock (``sm_bytes_per_cycle`` x f)
  combined as a 2-norm, so decode slows almost like 1/f below the knee and flattens above;
- power = static + clock-tree (grows with f V(f)^2) + utilisation x dynamic (f V(f)^2) + the
  DRAM's share of the step x ``memory_power_w`` (traffic power, clock-independent; 0 on the
  Orin profiles, whose GPU rail the fit covers).

A device profile's calibration table overrides this for the model it was measured with:
times are rescaled per (frequency, phase) and busy power is the measured power.
docs/devices.md has the published shapes it reproduces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from camel_vllm.core.events import IterationWork
from camel_vllm.devices.emulator.profiles import PHASES, CalibrationRow, DeviceProfile, ModelProfile


@dataclass(frozen=True)
class IterationCost:
    """The roofline's view of one iteration: bytes, FLOPs and the two bounds (seconds)."""

    bytes_moved: float
    flops: float
    memory_time_s: float
    compute_time_s: float
    time_s: float
    utilization: float
    #: Share of the step the DRAM streams at its effective bandwidth (drives ``memory_power_w``).
    memory_utilization: float = 0.0


@dataclass
class PerformanceModel:
    """Roofline time and power of ``model`` on ``device`` (see the module docstring)."""

    device: DeviceProfile
    model: ModelProfile
    _time_scale: dict[str, list[tuple[float, float]]] = field(default_factory=dict, init=False, repr=False)
    _busy_power: dict[str, list[tuple[float, float]]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        rows = [r for r in self.device.calibration if r.model == self.model.name]
        for phase in PHASES:
            points = [r for r in rows if r.phase == phase]
            if phase != "idle":
                scale: dict[float, list[float]] = {}
                for r in points:
                    work = _row_work(r)
                    modelled = self._roofline(work, r.freq_hz).time_s
                    scale.setdefault(r.freq_hz, []).append(r.iteration_time_s / modelled)
                if scale:
                    self._time_scale[phase] = sorted((f, _geo_mean(v)) for f, v in scale.items())
            power: dict[float, list[float]] = {}
            for r in points:
                power.setdefault(r.freq_hz, []).append(r.power_w)
            if power:
                self._busy_power[phase] = sorted((f, sum(v) / len(v)) for f, v in power.items())

    @property
    def calibrated(self) -> bool:
        return bool(self._time_scale or self._busy_power)

    @property
    def max_context_tokens(self) -> int:
        return self.model.max_context_tokens

    # ------------------------------------------------------------------------- time
    def voltage_ratio(self, freq_hz: float) -> float:
        """V(f)/V(f_max): ``min_voltage_ratio`` up to the voltage floor's clock (the lowest step
        unless the profile names one), then linear to 1 at f_max."""
        d = self.device
        floor_hz = d.min_frequency_hz if d.voltage_floor_hz is None else d.voltage_floor_hz
        span = d.max_frequency_hz - floor_hz
        x = 1.0 if span <= 0 else min(1.0, max(0.0, (freq_hz - floor_hz) / span))
        return d.min_voltage_ratio + (1.0 - d.min_voltage_ratio) * x

    def effective_bandwidth_bps(self, freq_hz: float) -> float:
        """DRAM limit and per-clock SM request limit combined as a p-norm of their inverses
        (``knee_sharpness`` p: 2 a soft knee, larger sharper)."""
        d = self.device
        dram = d.memory_bandwidth_bps * d.memory_efficiency
        sm = d.sm_bytes_per_cycle * freq_hz
        p = d.knee_sharpness
        if p == 2.0:
            return 1.0 / math.sqrt(1.0 / dram**2 + 1.0 / sm**2)
        low, high = min(dram, sm), max(dram, sm)  # the tighter limit, scaled (no underflow at large p)
        return low / (1.0 + (low / high) ** p) ** (1.0 / p)

    def _roofline(self, work: IterationWork, freq_hz: float) -> IterationCost:
        d, m = self.device, self.model
        tokens = work.num_prefill_tokens + work.num_decode_tokens
        if tokens <= 0:
            return IterationCost(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        prefill_pairs = _prefill_attention_pairs(work)
        kv_bytes = m.kv_bytes_per_token * (work.context_tokens + tokens
                                           + prefill_pairs / max(1, work.num_prefill_tokens))
        bytes_moved = m.weight_bytes + kv_bytes
        attn_pairs = work.context_tokens + prefill_pairs
        flops = 2.0 * m.params * tokens + 4.0 * m.layers * m.attention_heads * m.head_dim * attn_pairs
        peak = d.peak_flops * d.compute_efficiency * freq_hz / d.max_frequency_hz
        memory_time_s = bytes_moved / self.effective_bandwidth_bps(freq_hz)
        compute_time_s = flops / peak
        time_s = max(memory_time_s, compute_time_s) + d.iteration_overhead_s
        # SM activity: the busier of the two engines, over the iteration's time.
        sm_time_s = bytes_moved / (d.sm_bytes_per_cycle * freq_hz)
        utilization = min(1.0, max(sm_time_s, compute_time_s) / time_s)
        dram_s = bytes_moved / (d.memory_bandwidth_bps * d.memory_efficiency)
        return IterationCost(bytes_moved, flops, memory_time_s, compute_time_s, time_s, utilization,
                             min(1.0, dram_s / time_s))

    def cost(self, work: IterationWork, freq_hz: float) -> IterationCost:
        """The roofline cost, rescaled by the calibration table when there is one."""
        base = self._roofline(work, freq_hz)
        table = self._time_scale.get(_phase(work))
        if not table or base.time_s <= 0:
            return base
        scale = _interpolate(table, freq_hz)
        return IterationCost(base.bytes_moved, base.flops, base.memory_time_s * scale,
                             base.compute_time_s * scale, base.time_s * scale, base.utilization,
                             base.memory_utilization)

    def iteration_time_s(self, work: IterationWork, freq_hz: float) -> float:
        """Modelled seconds for one iteration doing ``work`` at ``freq_hz``."""
        return self.cost(work, freq_hz).time_s

    # ------------------------------------------------------------------------ power
    def power_w(self, freq_hz: float, utilization: float, memory_utilization: float = 0.0) -> float:
        """GPU-rail power (W) at ``freq_hz`` with the SMs ``utilization`` (0..1) busy and the
        DRAM streaming ``memory_utilization`` (0..1) of the time (``memory_power_w`` at 1)."""
        d = self.device
        fv2 = (freq_hz / d.max_frequency_hz) * self.voltage_ratio(freq_hz) ** 2
        u = min(1.0, max(0.0, utilization))
        m = min(1.0, max(0.0, memory_utilization))
        return d.static_power_w + d.clock_power_w * fv2 + d.dynamic_power_w * fv2 * u + d.memory_power_w * m

    def idle_power_w(self, freq_hz: float) -> float:
        """Quiet GPU-rail power (W) with the clock held at ``freq_hz``."""
        table = self._busy_power.get("idle")
        if table:
            return _interpolate(table, freq_hz)
        return self.power_w(freq_hz, 0.0)

    def iteration_power_w(self, work: IterationWork, freq_hz: float) -> float:
        """Mean power (W) while the iteration runs: measured when calibrated, else modelled."""
        table = self._busy_power.get(_phase(work))
        if table:
            return _interpolate(table, freq_hz)
        cost = self._roofline(work, freq_hz)
        return self.power_w(freq_hz, cost.utilization, cost.memory_utilization)


def _row_work(row: CalibrationRow) -> IterationWork:
    if row.phase == "prefill":
        per = max(1, row.tokens // max(1, row.batch))
        by_request = {f"r{i}": per for i in range(row.batch)}
        return IterationWork(by_request, num_prefill_tokens=per * row.batch, num_decode_tokens=0)
    by_request = {f"r{i}": 1 for i in range(row.batch)}
    return IterationWork(by_request, num_prefill_tokens=0, num_decode_tokens=row.batch,
                         context_tokens=row.context_tokens)


def _phase(work: IterationWork) -> str:
    if work.num_prefill_tokens <= 0 and work.num_decode_tokens <= 0:
        return "idle"
    return "prefill" if work.num_prefill_tokens >= work.num_decode_tokens else "decode"


def _prefill_attention_pairs(work: IterationWork) -> float:
    """Query x key pairs of causal attention inside the prefill chunks (chunks from position 0).

    ``IterationWork`` does not say which request is prefilling, so requests with more than
    one token are taken as prefill chunks; their total is clipped to ``num_prefill_tokens``.
    """
    if work.num_prefill_tokens <= 0:
        return 0.0
    chunks = [t for t in work.tokens_by_request.values() if t > 1]
    if not chunks:
        chunks = [work.num_prefill_tokens]
    total = sum(chunks)
    scale = work.num_prefill_tokens / total if total else 1.0
    return sum((t * scale) * (t * scale + 1) / 2.0 for t in chunks)


def _geo_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(max(v, 1e-12)) for v in values) / len(values))


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear in x, held constant outside the measured range."""
    if x <= points[0][0]:
        return points[0][1]
    if x >= points[-1][0]:
        return points[-1][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]  # pragma: no cover
