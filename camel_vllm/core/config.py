"""camel-vllm's configuration: one dataclass, parsed from ``--additional-config`` or YAML.

In vLLM the configuration arrives as ``--additional-config '{"camel": {...}}'``; the value
of ``"camel"`` may also name a YAML file (``{"camel": {"config_file": "camel.yaml", ...}}``,
inline keys override the file's). Every bad value raises :class:`ConfigError` whose message
is one line naming the key and the value, so start-up stops before any request is served.
Checks that need the device (is a frequency available?) or the engine (is a batch cap above
``--max-num-seqs``?) are made by :func:`camel_vllm.wiring.build.build_controller`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from camel_vllm.core.errors import CamelError
from camel_vllm.core.paths import file_problem

COST_NAMES = ("edp", "edp-raw", "weighted")
SLO_METRICS = ("ttft", "tpot", "e2e")
EMULATION_TIME_MODES = ("relative", "absolute")
#: Iterations an arm is held (``epoch_iterations``), in the config and the controller alike.
DEFAULT_EPOCH_ITERATIONS = 64


class ConfigError(CamelError, ValueError):
    """A configuration value is wrong. ``str(err)`` is one line naming key and value."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"camel config: {key}={_show(value)}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, Any, str]]:
        """Pickle by the constructor's arguments, so the error crosses process boundaries
        (``bench sim`` workers); the default pickles ``args`` (the message) only and the
        parent cannot rebuild it."""
        return (type(self), (self.key, self.value, self.reason))


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class SLOConfig:
    """A latency objective: ``metric`` at ``quantile`` must stay at or below ``threshold_s``."""

    metric: str = "e2e"
    threshold_s: float = 10.0
    quantile: float = 0.9


@dataclass(frozen=True)
class CamelConfig:
    """Everything camel-vllm reads from the user. Defaults are documented in the README.

    ``frequencies_mhz`` is ``"auto"`` (every frequency the device offers) or a list in MHz.
    ``batch_sizes`` is ``"auto"`` (caps ending at ``--max-num-seqs``: up to 28, Camel's
    4, 8, ..., 28 clipped to it plus it; above, Camel's seven caps scaled to it, see
    :func:`camel_vllm.wiring.build.resolve_batch_sizes`) or a list.
    ``epoch_iterations`` / ``epoch_s``: an arm is held until either bound is reached
    (``epoch_s`` 0 disables the time bound; ``None``, the default, takes the policy's own:
    2 s for ``camel``, off for the others). Default 64 iterations: about 2.5 s on the
    emulated Orin at the Azure conversation trace's load (~40 ms per iteration), a quarter
    of a typical conversation request's latency, so a request's cost is credited to ~4 arms
    instead of ~15 with 16 iterations (tuning study in docs/policies.md: multi-seed, lower
    mean EDP on the conversation and code traces and in Camel's experiment).
    ``cost``: ``edp`` is log EDP with request size removed as a control variate
    (:class:`camel_vllm.control.cost.SizeAdjustedLogEDPCost`); ``make_cost("edp-raw")`` is the
    plain log EDP.
    ``switch_cost``: added to the sampled cost of every arm whose frequency differs from the
    one in force, in the policy's cost units (0 disables).
    """

    device: str = "auto"
    device_profile: str = "orin-agx-32gb"
    model_profile: str = "llama-3.2-1b"
    frequencies_mhz: Any = "auto"
    batch_sizes: Any = "auto"
    policy: str = "camel"
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    cost: str = "edp"
    alpha: float = 0.5
    contextual: bool = True
    epoch_iterations: int = DEFAULT_EPOCH_ITERATIONS
    epoch_s: float | None = None
    switch_cost: float = 0.0
    slo: SLOConfig | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    state_path: str | None = None
    state_save_every: int = 50
    request_log: str | None = None
    seed: int = 0
    read_only: bool = False
    rails: str = "VDD_GPU_SOC"
    sample_hz: float | None = None
    sysfs_root: str = "/"
    emulation_time: str = "relative"

    # ------------------------------------------------------------------ parsing
    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, base_dir: str = ".") -> "CamelConfig":
        """Build and validate a config from a mapping (the value of ``"camel"``)."""
        data: dict[str, Any] = {}
        raw = dict(raw or {})
        config_file = raw.pop("config_file", None)
        if config_file is not None:
            data.update(load_yaml_file(str(config_file), base_dir=base_dir))
        data.update(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(key, data[key], f"unknown key (known: {', '.join(sorted(known))})")
        if isinstance(data.get("slo"), Mapping):
            data["slo"] = _parse_slo(data["slo"])
        elif data.get("slo") is not None and not isinstance(data["slo"], SLOConfig):
            raise ConfigError("slo", data["slo"], "expected a mapping with metric, threshold_s, quantile")
        config = cls(**data)
        config.validate()
        return config

    @classmethod
    def from_additional_config(cls, additional: Mapping[str, Any] | None) -> "CamelConfig":
        """Read the ``"camel"`` entry of vLLM's ``additional_config`` (absent: defaults)."""
        section = (additional or {}).get("camel", {})
        if isinstance(section, str):
            section = {"config_file": section}
        if not isinstance(section, Mapping):
            raise ConfigError("camel", section, "expected a mapping or the path of a YAML file")
        return cls.from_mapping(section)

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check every value that can be checked without a device or an engine."""
        # the device kind is its declaration's to check (devices.registry)
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError("device", self.device, "must be a device kind")
        # the policy's name and parameters are its declaration's to check (policies.registry)
        if not isinstance(self.policy, str) or not self.policy:
            raise ConfigError("policy", self.policy, "must be a policy name")
        _one_of("cost", self.cost, COST_NAMES)
        _one_of("emulation_time", self.emulation_time, EMULATION_TIME_MODES)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("alpha", self.alpha, "must be a number in [0, 1]")
        if self.frequencies_mhz != "auto":
            _positive_numbers("frequencies_mhz", self.frequencies_mhz)
        if self.batch_sizes != "auto":
            _positive_numbers("batch_sizes", self.batch_sizes, integers=True)
        _positive_int("epoch_iterations", self.epoch_iterations)
        _positive_int("state_save_every", self.state_save_every)
        if self.epoch_s is not None:
            _non_negative("epoch_s", self.epoch_s)
        _non_negative("switch_cost", self.switch_cost)
        if not isinstance(self.contextual, bool):
            raise ConfigError("contextual", self.contextual, "must be true or false")
        if not isinstance(self.read_only, bool):
            raise ConfigError("read_only", self.read_only, "must be true or false")
        if self.metrics_port is not None and (
            isinstance(self.metrics_port, bool) or not isinstance(self.metrics_port, int)
            or not 0 <= self.metrics_port <= 65535
        ):
            raise ConfigError("metrics_port", self.metrics_port, "must be an integer port in 0..65535 (or null: off)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError("seed", self.seed, "must be an integer >= 0")
        if not isinstance(self.policy_params, Mapping):
            raise ConfigError("policy_params", self.policy_params, "must be a mapping")
        if self.sample_hz is not None:
            _non_negative("sample_hz", self.sample_hz)
        for key in ("device_profile", "model_profile", "metrics_host"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                raise ConfigError(key, getattr(self, key), "must be a non-empty string")
        if not isinstance(self.rails, str) or not self.rails.strip(" ,"):
            raise ConfigError("rails", self.rails, 'must be a rail name, a comma list of names, or "all"')
        if not isinstance(self.sysfs_root, str) or not self.sysfs_root:
            raise ConfigError("sysfs_root", self.sysfs_root, "must be the path of a folder")
        if not os.path.isdir(self.sysfs_root):
            raise ConfigError("sysfs_root", self.sysfs_root, "is not a folder")
        if self.state_path is not None:
            writable_file("state_path", self.state_path)
        if self.request_log is not None:
            writable_file("request_log", self.request_log)

    def replace(self, **changes: Any) -> "CamelConfig":
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config


def load_yaml_file(path: str, *, base_dir: str = ".") -> dict[str, Any]:
    """Read a YAML config file; its top level may be the camel mapping or ``{camel: {...}}``."""
    import yaml

    full = path if os.path.isabs(path) else os.path.join(base_dir, path)
    problem = file_problem(full, must_exist=False)
    if problem:
        raise ConfigError("config_file", path, problem)
    try:
        with open(full, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
    except OSError as err:
        raise ConfigError("config_file", path, f"cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError("config_file", path, f"not a UTF-8 text file (byte at offset {err.start})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("config_file", path, f"not valid YAML{where}") from err
    if loaded is None:
        return {}
    if isinstance(loaded, Mapping) and set(loaded) == {"camel"}:
        loaded = loaded["camel"]
    if not isinstance(loaded, Mapping):
        raise ConfigError("config_file", path, "top level must be a mapping")
    return dict(loaded)


def _parse_slo(raw: Mapping[str, Any]) -> SLOConfig:
    unknown = set(raw) - {"metric", "threshold_s", "quantile"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"slo.{key}", raw[key], "unknown key (known: metric, quantile, threshold_s)")
    slo = SLOConfig(**raw)
    _one_of("slo.metric", slo.metric, SLO_METRICS)
    if (not isinstance(slo.threshold_s, (int, float)) or isinstance(slo.threshold_s, bool)
            or not math.isfinite(slo.threshold_s) or slo.threshold_s <= 0):
        raise ConfigError("slo.threshold_s", slo.threshold_s, "must be a positive number of seconds")
    if not isinstance(slo.quantile, (int, float)) or not 0.0 < slo.quantile < 1.0:
        raise ConfigError("slo.quantile", slo.quantile, "must be in (0, 1)")
    return slo


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"must be one of {', '.join(allowed)}")


def _positive_numbers(key: str, value: Any, *, integers: bool = False) -> None:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(key, value, 'must be a non-empty list or "auto"')
    for item in value:
        ok = isinstance(item, int) if integers else isinstance(item, (int, float))
        if isinstance(item, bool) or not ok or not math.isfinite(item) or item <= 0:
            kind = "positive integers" if integers else "positive numbers"
            raise ConfigError(key, value, f"{_show(item)} is not valid: entries must be {kind}")


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "must be an integer >= 1")


def _non_negative(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(key, value, "must be a finite number >= 0")


def writable_file(key: str, path: Any) -> None:
    """The file must be readable if it exists, and its folder writable (atomic rename)."""
    if not isinstance(path, str) or not path:
        raise ConfigError(key, path, "must be a file path")
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise ConfigError(key, path, f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(key, path, f"folder {folder} is not writable")
    problem = file_problem(path, must_exist=False)
    if problem:
        raise ConfigError(key, path, problem)
    if os.path.exists(path) and not os.access(path, os.R_OK):
        raise ConfigError(key, path, "exists but is not readable")
