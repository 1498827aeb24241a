"""Device and model profiles, and the roofline performance and power model of the emulator.

A *device profile* (``orin-agx-32gb``, ``orin-agx-64gb``) holds a board's frequency steps,
memory bandwidth, compute peak and power envelope; a *model profile* (``llama-3.2-1b``,
``qwen-2.5-3b``) holds a model's size and shape. Both are YAML files in
``camel_vllm/data/profiles/`` whose comments give the source of every constant; a name may
also be the path of a file, such as one written by ``benchmarks/profile_device.py``.

The model (:class:`PerformanceModel`), per engine iteration at GPU frequency ``f``:

- bytes moved = weights (read once per iteration) + KV cache read by decode tokens
  (``context_tokens`` x KV bytes per token) + KV written for every new token;
- FLOPs = 2 x params x tokens + attention (4 x layers x hidden x query x key tokens);
- time = max(memory time, compute time) + a fixed launch overhead, where compute time is
  FLOPs / (peak x f / f_max) and memory time is bytes over the *effective* bandwidth. The
  effective bandwidth combines the DRAM limit with the bytes the SMs can request per clock
  (``sm_bytes_per_cycle`` x f) as a 2-norm: below the knee decode slows almost like 1/f, above
  it flattens (the published AGX Orin decode shape, ../shared/reference/hardware.md);
- power = static + clock-tree (grows with f V(f)^2) + utilisation x dynamic (f V(f)^2).

A *calibration table* (rows measured by ``benchmarks/profile_device.py``) in a device
profile overrides the published-data model for the model it was measured with: iteration
times are the roofline times rescaled per (frequency, phase) and busy power is the measured
power, so a measured profile replaces the published one without code changes.
"""

from __future__ import annotations

import functools

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from camel_vllm.core.config import ConfigError
from camel_vllm.core.events import IterationWork

PROFILE_FORMAT = "camel-vllm-profile/1"
PHASES = ("prefill", "decode", "idle")
#: Shipped profiles (YAML, one file per profile).
PROFILE_DIR = Path(__file__).resolve().parents[2] / "data" / "profiles"


@dataclass(frozen=True)
class CalibrationRow:
    """One measured point: an iteration of ``phase`` at ``freq_hz`` (units in the names).

    ``tokens`` are the tokens scheduled in the iteration (prefill: batch x prompt length;
    decode: batch), ``context_tokens`` the KV tokens read (decode). ``idle`` rows have
    ``tokens == 0`` and give the quiet power at that frequency.
    """

    model: str
    phase: str
    freq_hz: float
    batch: int
    tokens: int
    context_tokens: int
    iteration_time_s: float
    power_w: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "phase": self.phase, "freq_hz": self.freq_hz, "batch": self.batch,
            "tokens": self.tokens, "context_tokens": self.context_tokens,
            "iteration_time_s": self.iteration_time_s, "power_w": self.power_w,
        }


@dataclass(frozen=True)
class DeviceProfile:
    """A board as the emulator sees it. Units in field names; sources in the YAML file."""

    name: str
    frequencies_hz: tuple[float, ...]
    memory_bandwidth_bps: float
    memory_efficiency: float
    peak_flops: float
    compute_efficiency: float
    sm_bytes_per_cycle: float
    iteration_overhead_s: float
    static_power_w: float
    clock_power_w: float
    dynamic_power_w: float
    min_voltage_ratio: float
    power_ceiling_w: float
    switch_latency_s: float
    power_noise: float
    rails: tuple[str, ...] = ("VDD_GPU_SOC",)
    source: str = "published"
    calibration: tuple[CalibrationRow, ...] = ()
    path: str | None = None

    @functools.cached_property
    def max_frequency_hz(self) -> float:
        """Highest step (Hz); cached: the roofline reads it several times per iteration."""
        return max(self.frequencies_hz)

    @functools.cached_property
    def min_frequency_hz(self) -> float:
        return min(self.frequencies_hz)


@dataclass(frozen=True)
class ModelProfile:
    """A model's size and shape (from its Hugging Face ``config.json``), fp16 weights."""

    name: str
    params: float
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    max_context_tokens: int
    bytes_per_param: float = 2.0
    path: str | None = None

    @property
    def weight_bytes(self) -> float:
        return self.params * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V, every layer, every KV head (fp16)."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_param


# ------------------------------------------------------------------------------- loading
def available_profiles(kind: str) -> list[str]:
    """Names of the shipped profiles of ``kind`` (``"device"`` or ``"model"``)."""
    names = []
    for entry in sorted(PROFILE_DIR.iterdir()):
        if entry.name.endswith((".yaml", ".yml", ".json")):
            data = _parse(entry.read_text(encoding="utf-8"), entry.name)
            if data.get("kind") == kind:
                names.append(str(data.get("name")))
    return sorted(names)


def _parse(text: str, where: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("profile", where, f"not valid YAML/JSON{line}") from err
    if not isinstance(data, dict):
        raise ConfigError("profile", where, "top level must be a mapping")
    return data


def _read_profile(name: str, kind: str, key: str) -> tuple[dict[str, Any], str | None]:
    if not isinstance(name, str) or not name:
        raise ConfigError(key, name, "must be a profile name or the path of a profile file")
    if os.path.sep in name or name.endswith((".yaml", ".yml", ".json")):
        if os.path.exists(name) and not os.path.isfile(name) and not os.path.isdir(name):
            raise ConfigError(key, name, "is not a regular file (a FIFO, socket or device)")
        try:
            with open(name, encoding="utf-8") as fh:
                data = _parse(fh.read(), name)
        except OSError as err:
            raise ConfigError(key, name, f"cannot read profile file: {err.strerror}") from err
        except UnicodeDecodeError as err:
            raise ConfigError(key, name, f"not a UTF-8 text file (byte at offset {err.start})") from err
        path: str | None = name
    else:
        for suffix in (".yaml", ".yml", ".json"):
            entry = PROFILE_DIR / (name + suffix)
            if entry.is_file():
                data = _parse(entry.read_text(encoding="utf-8"), entry.name)
                break
        else:
            known = ", ".join(available_profiles(kind))
            raise ConfigError(key, name, f"unknown {kind} profile (known: {known}; or give a file path)")
        path = None
    if data.get("kind") != kind:
        raise ConfigError(key, name, f"is a {data.get('kind')!r} profile, expected kind: {kind}")
    return data, path


def _number(value: Any) -> float | None:
    """A number, or a numeric string (YAML 1.1 reads ``204.8e9``, no exponent sign, as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _field(data: Mapping[str, Any], name: str, key: str, where: str, *, positive: bool = True) -> float:
    value = data.get(name)
    value = _number(value) if _number(value) is not None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
        positive and value <= 0
    ):
        raise ConfigError(key, where, f"field {name}={value!r} must be a {'positive ' if positive else ''}number")
    return float(value)


def load_device_profile(name: str) -> DeviceProfile:
    """Load a device profile by name (shipped) or path. Bad input: ConfigError on ``device_profile``."""
    key = "device_profile"
    data, path = _read_profile(name, "device", key)
    raw_freqs = data.get("frequencies_hz")
    freqs = [_number(f) for f in raw_freqs] if isinstance(raw_freqs, list) else []
    if not freqs or not all(f is not None and f > 0 for f in freqs):
        raise ConfigError(key, name, f"field frequencies_hz={raw_freqs!r} must be a non-empty list of positive numbers")
    num = {n: _field(data, n, key, name) for n in (
        "memory_bandwidth_bps", "memory_efficiency", "peak_flops", "compute_efficiency",
        "sm_bytes_per_cycle", "static_power_w", "dynamic_power_w", "min_voltage_ratio", "power_ceiling_w",
    )}
    zero_ok = {n: _field(data, n, key, name, positive=False) for n in (
        "iteration_overhead_s", "clock_power_w", "switch_latency_s", "power_noise",
    )}
    rows = tuple(_calibration_row(r, name, i) for i, r in enumerate(data.get("calibration") or []))
    return DeviceProfile(
        name=str(data.get("name", name)),
        frequencies_hz=tuple(sorted(float(f) for f in freqs if f is not None)),
        rails=tuple(data.get("rails") or ("VDD_GPU_SOC",)),
        source=str(data.get("source", "published")),
        calibration=rows,
        path=path,
        **num,
        **zero_ok,
    )


def _calibration_row(raw: Any, where: str, index: int) -> CalibrationRow:
    key = f"device_profile.calibration[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(key, where, "must be a mapping")
    if raw.get("phase") not in PHASES:
        raise ConfigError(key, where, f"phase={raw.get('phase')!r} must be one of {', '.join(PHASES)}")
    try:
        return CalibrationRow(
            model=str(raw["model"]), phase=str(raw["phase"]), freq_hz=float(raw["freq_hz"]),
            batch=int(raw["batch"]), tokens=int(raw["tokens"]), context_tokens=int(raw.get("context_tokens", 0)),
            iteration_time_s=float(raw["iteration_time_s"]), power_w=float(raw["power_w"]),
        )
    except KeyError as err:
        raise ConfigError(key, where, f"missing field {err.args[0]}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(key, where, f"bad value: {err}") from err


def load_model_profile(name: str) -> ModelProfile:
    """Load a model profile by name (shipped) or path. Bad input: ConfigError on ``model_profile``."""
    key = "model_profile"
    data, path = _read_profile(name, "model", key)
    ints = {}
    for n in ("layers", "hidden_size", "attention_heads", "kv_heads", "head_dim", "max_context_tokens"):
        value = data.get(n)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(key, name, f"field {n}={value!r} must be a positive integer")
        ints[n] = value
    return ModelProfile(
        name=str(data.get("name", name)),
        params=_field(data, "params", key, name),
        bytes_per_param=_field({"b": data.get("bytes_per_param", 2.0)}, "b", key, name),
        path=path,
        **ints,
    )


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class IterationCost:
    """The roofline's view of one iteration: bytes, FLOPs and the two bounds (seconds)."""

    bytes_moved: float
    flops: float
    memory_time_s: float
    compute_time_s: float
    time_s: float
    utilization: float


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
        """V(f)/V(f_max): linear from ``min_voltage_ratio`` at f_min to 1 at f_max."""
        d = self.device
        span = d.max_frequency_hz - d.min_frequency_hz
        x = 1.0 if span <= 0 else min(1.0, max(0.0, (freq_hz - d.min_frequency_hz) / span))
        return d.min_voltage_ratio + (1.0 - d.min_voltage_ratio) * x

    def effective_bandwidth_bps(self, freq_hz: float) -> float:
        """DRAM limit and per-clock SM request limit combined as a 2-norm of their inverses."""
        d = self.device
        dram = d.memory_bandwidth_bps * d.memory_efficiency
        sm = d.sm_bytes_per_cycle * freq_hz
        return 1.0 / math.sqrt(1.0 / dram**2 + 1.0 / sm**2)

    def _roofline(self, work: IterationWork, freq_hz: float) -> IterationCost:
        d, m = self.device, self.model
        tokens = work.num_prefill_tokens + work.num_decode_tokens
        if tokens <= 0:
            return IterationCost(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        prefill_pairs = _prefill_attention_pairs(work)
        kv_bytes = m.kv_bytes_per_token * (work.context_tokens + tokens + prefill_pairs / max(1, work.num_prefill_tokens))
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
        return IterationCost(bytes_moved, flops, memory_time_s, compute_time_s, time_s, utilization)

    def cost(self, work: IterationWork, freq_hz: float) -> IterationCost:
        """The roofline cost, rescaled by the calibration table when there is one."""
        base = self._roofline(work, freq_hz)
        table = self._time_scale.get(_phase(work))
        if not table or base.time_s <= 0:
            return base
        scale = _interpolate(table, freq_hz)
        return IterationCost(base.bytes_moved, base.flops, base.memory_time_s * scale,
                             base.compute_time_s * scale, base.time_s * scale, base.utilization)

    def iteration_time_s(self, work: IterationWork, freq_hz: float) -> float:
        """Modelled seconds for one iteration doing ``work`` at ``freq_hz``."""
        return self.cost(work, freq_hz).time_s

    # ------------------------------------------------------------------------ power
    def power_w(self, freq_hz: float, utilization: float) -> float:
        """GPU-rail power (W) at ``freq_hz`` with the SMs ``utilization`` (0..1) busy."""
        d = self.device
        fv2 = (freq_hz / d.max_frequency_hz) * self.voltage_ratio(freq_hz) ** 2
        u = min(1.0, max(0.0, utilization))
        return d.static_power_w + d.clock_power_w * fv2 + d.dynamic_power_w * fv2 * u

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
        return self.power_w(freq_hz, self._roofline(work, freq_hz).utilization)


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
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]  # pragma: no cover


def device_profile_to_dict(profile: DeviceProfile) -> dict[str, Any]:
    """The YAML/JSON mapping :func:`load_device_profile` reads back (calibration included)."""
    return {
        "format": PROFILE_FORMAT,
        "kind": "device",
        "name": profile.name,
        "source": profile.source,
        "frequencies_hz": list(profile.frequencies_hz),
        "rails": list(profile.rails),
        "memory_bandwidth_bps": profile.memory_bandwidth_bps,
        "memory_efficiency": profile.memory_efficiency,
        "peak_flops": profile.peak_flops,
        "compute_efficiency": profile.compute_efficiency,
        "sm_bytes_per_cycle": profile.sm_bytes_per_cycle,
        "iteration_overhead_s": profile.iteration_overhead_s,
        "static_power_w": profile.static_power_w,
        "clock_power_w": profile.clock_power_w,
        "dynamic_power_w": profile.dynamic_power_w,
        "min_voltage_ratio": profile.min_voltage_ratio,
        "power_ceiling_w": profile.power_ceiling_w,
        "switch_latency_s": profile.switch_latency_s,
        "power_noise": profile.power_noise,
        "calibration": [r.as_dict() for r in profile.calibration],
    }
