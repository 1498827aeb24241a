"""Published measurements of LLM inference against GPU clock: the data file and its types.

``camel_vllm/data/measurements/published.yaml`` holds every published point a board profile was
fitted to or is compared with: its source (title, address, table), a verbatim excerpt, the work it
measured and what it measured. :mod:`.fidelity` sets each point beside the emulator's prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from camel_vllm.core.config import ConfigError

MEASUREMENTS_FORMAT = "camel-vllm-measurements/1"
#: The shipped data file.
PUBLISHED_PATH = Path(__file__).resolve().parents[2] / "data" / "measurements" / "published.yaml"
METRICS = ("time", "power", "energy", "throughput", "best_energy_saving")
COMPARISONS = ("ratio_to_top", "absolute")
PHASES = ("decode", "prefill", "idle", "stress")


@dataclass(frozen=True)
class Source:
    """Where a series was published."""

    id: str
    title: str
    url: str
    ref: str
    board: str
    setup: str = ""
    caveats: str = ""


@dataclass(frozen=True)
class Work:
    """What the measured step did: ``phase`` and its size (tokens, requests, context tokens)."""

    phase: str
    batch: int = 1
    tokens: int = 0
    context_tokens: int = 0


@dataclass(frozen=True)
class Point:
    """One published number. ``clock_fraction``: the clock over the series' top clock (ratio
    comparisons); ``freq_mhz``: the clock itself (absolute ones). ``bound``: ``upper``/``lower``
    when the source gives a bound, not a value. ``metric`` and ``work`` override the series'.
    ``confounded``: why the point changes more than the GPU clock (a power mode that also lowers
    the CPU clock): compared, but counted apart."""

    label: str
    value: float
    unit: str
    excerpt: str
    freq_mhz: float | None = None
    clock_fraction: float | None = None
    #: The profiles whose constants were fitted to this point (compared with any other).
    fitted_to: tuple[str, ...] = ()
    caveat: str = ""
    not_comparable: str = ""
    confounded: str = ""
    bound: str | None = None
    metric: str | None = None
    work: Work | None = None


@dataclass(frozen=True)
class Series:
    """Points of one quantity of one workload on one board across clocks (or power modes)."""

    id: str
    source: Source
    board_class: str
    model: str
    metric: str
    compare: str
    what: str
    work: Work | None
    points: tuple[Point, ...]
    model_profile: str | None = None

    def applies_to(self, profile_name: str, board_class: str | None = None) -> bool:
        """Whether this series is set against ``profile_name``: ``board_class`` ``orin`` applies to
        every Orin profile (clocks as fractions of f_max), a profile name to the profiles whose
        names start with it (``orin-agx-32gb``: also ``orin-agx-32gb-roofline``, ``-measured``)."""
        if board_class is not None:
            return self.board_class == board_class
        if self.board_class == "orin":
            return "orin" in profile_name
        return profile_name.startswith(self.board_class)


@dataclass(frozen=True)
class Measurements:
    sources: dict[str, Source]
    series: tuple[Series, ...] = field(default_factory=tuple)


def load_measurements(path: str | Path = PUBLISHED_PATH) -> Measurements:
    """Read and check a measurements file; a bad one raises ConfigError naming the entry."""
    import yaml

    where = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as err:
        raise ConfigError("measurements", where, f"cannot read: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError("measurements", where, "not valid YAML") from err
    if not isinstance(data, Mapping) or data.get("format") != MEASUREMENTS_FORMAT:
        raise ConfigError("measurements", where, f"not a {MEASUREMENTS_FORMAT} file")
    sources = {}
    for key, raw in (data.get("sources") or {}).items():
        if not isinstance(raw, Mapping):
            raise ConfigError(f"measurements.sources.{key}", where, "must be a mapping")
        sources[key] = Source(id=key, **{k: str(v) for k, v in raw.items()})
    series = tuple(_series(raw, sources, where, i) for i, raw in enumerate(data.get("series") or []))
    return Measurements(sources, series)


def _work(raw: Any, key: str, where: str) -> Work | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or raw.get("phase") not in PHASES:
        raise ConfigError(key, where, f"work must be a mapping with phase one of {', '.join(PHASES)}")
    return Work(phase=str(raw["phase"]), batch=int(raw.get("batch", 1)), tokens=int(raw.get("tokens", 0)),
                context_tokens=int(raw.get("context_tokens", 0)))


def _series(raw: Any, sources: Mapping[str, Source], where: str, index: int) -> Series:
    key = f"measurements.series[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(key, where, "must be a mapping")
    key = f"measurements.series[{raw.get('id', index)}]"
    if raw.get("source") not in sources:
        raise ConfigError(key, where, f"source {raw.get('source')!r} is not among the file's sources")
    if raw.get("metric") not in METRICS or raw.get("compare") not in COMPARISONS:
        raise ConfigError(key, where, f"metric must be one of {', '.join(METRICS)} and compare one of "
                                      f"{', '.join(COMPARISONS)}")
    points = []
    for p in raw.get("points") or []:
        value = p.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(key, where, f"point {p.get('label')!r}: value={value!r} must be a positive number")
        points.append(Point(
            label=str(p["label"]), value=float(value), unit=str(p.get("unit", "")), excerpt=str(p.get("excerpt", "")),
            freq_mhz=None if p.get("freq_mhz") is None else float(p["freq_mhz"]),
            clock_fraction=None if p.get("clock_fraction") is None else float(p["clock_fraction"]),
            fitted_to=tuple(str(n) for n in (p.get("fitted") or ())), caveat=str(p.get("caveat", "")),
            not_comparable=str(p.get("not_comparable", "")), confounded=str(p.get("confounded", "")),
            bound=p.get("bound"), metric=p.get("metric"),
            work=_work(p.get("work"), key, where),
        ))
    return Series(
        id=str(raw["id"]), source=sources[raw["source"]], board_class=str(raw["board_class"]), model=str(raw["model"]),
        metric=str(raw["metric"]), compare=str(raw["compare"]), what=str(raw.get("what", "")),
        work=_work(raw.get("work"), key, where), points=tuple(points), model_profile=raw.get("model_profile"),
    )
