"""Device and model profiles of the emulator: loading, checking and writing them.

A *device profile* (``orin-agx-32gb``, ``orin-agx-64gb``) holds a board's frequency steps,
memory bandwidth, compute peak, power envelope and, optionally, a *calibration table* of
measured iterations (``benchmarks/profile_device.py`` writes one); a *model profile*
(``llama-3.2-1b``, ``qwen-2.5-3b``) holds a model's size and shape. Both are YAML files in
``camel_vllm/data/profiles/`` whose comments give the source of every constant; a name may
also be the path of a file. :mod:`.roofline` turns a pair into iteration times and power.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from camel_vllm.core.config import ConfigError

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
class Serving:
    """How vLLM serves on a board by default: the model profile benchmarks run there and the
    engine limits vLLM picks on that hardware (``--max-num-seqs``, ``--max-num-batched-tokens``).
    ``bench matrix --device-profile`` uses them for each board unless the command line says
    otherwise."""

    model_profile: str | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None


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
    #: Exponent of the p-norm that joins the DRAM limit and the SMs' request limit into one
    #: effective bandwidth: 2 is a soft knee (the roofline profiles), larger is sharper.
    knee_sharpness: float = 2.0
    #: The clock (Hz) at and below which the GPU voltage sits at ``min_voltage_ratio`` of its
    #: top value; above it the voltage rises linearly to 1 at the top clock. None: the lowest step.
    voltage_floor_hz: float | None = None
    #: Power (W) of DRAM traffic at the effective bandwidth, clock-independent (HBM boards).
    memory_power_w: float = 0.0
    #: How vLLM is run on this board by default (``serving:`` in the file; see :class:`Serving`).
    serving: Serving | None = None

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
    if num["min_voltage_ratio"] > 1.0:
        raise ConfigError(key, name, f"field min_voltage_ratio={num['min_voltage_ratio']} must be at most 1")
    optional: dict[str, Any] = {}
    if data.get("knee_sharpness") is not None:
        optional["knee_sharpness"] = _field(data, "knee_sharpness", key, name)
        if optional["knee_sharpness"] < 1.0:
            raise ConfigError(key, name, f"field knee_sharpness={optional['knee_sharpness']} must be >= 1")
    if data.get("voltage_floor_hz") is not None:
        optional["voltage_floor_hz"] = _field(data, "voltage_floor_hz", key, name)
    if data.get("memory_power_w") is not None:
        optional["memory_power_w"] = _field(data, "memory_power_w", key, name, positive=False)
    rows = tuple(_calibration_row(r, name, i) for i, r in enumerate(data.get("calibration") or []))
    return DeviceProfile(
        name=str(data.get("name", name)),
        frequencies_hz=tuple(sorted(float(f) for f in freqs if f is not None)),
        rails=tuple(data.get("rails") or ("VDD_GPU_SOC",)),
        source=str(data.get("source", "published")),
        calibration=rows,
        path=path,
        serving=_serving(data.get("serving"), name),
        **num,
        **zero_ok,
        **optional,
    )


def _serving(raw: Any, where: str) -> Serving | None:
    key = "device_profile.serving"
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(key, where, "must be a mapping (model_profile, max_num_seqs, max_num_batched_tokens)")
    unknown = set(raw) - {"model_profile", "max_num_seqs", "max_num_batched_tokens"}
    if unknown:
        raise ConfigError(key, where, f"unknown field {sorted(unknown)[0]} (known: model_profile, max_num_seqs, "
                          "max_num_batched_tokens)")
    ints: dict[str, int | None] = {}
    for n in ("max_num_seqs", "max_num_batched_tokens"):
        value = raw.get(n)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(key, where, f"field {n}={value!r} must be a positive integer")
        ints[n] = value
    model = raw.get("model_profile")
    if model is not None and (not isinstance(model, str) or not model):
        raise ConfigError(key, where, f"field model_profile={model!r} must be a model profile name or path")
    return Serving(model_profile=model, **ints)


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
        "knee_sharpness": profile.knee_sharpness,
        "voltage_floor_hz": profile.voltage_floor_hz,
        "memory_power_w": profile.memory_power_w,
        **({"serving": {k: v for k, v in dataclasses.asdict(profile.serving).items() if v is not None}}
           if profile.serving is not None else {}),
        "calibration": [r.as_dict() for r in profile.calibration],
    }
