"""Event tallies: what the exporter accumulates from controller events, in plain Python.

The engine thread adds to a :class:`Tally` on every decision and finished request (a dict
update and a bisect under an uncontended lock); the HTTP thread copies it at scrape time
with :meth:`Tally.snapshot`. One lock around both keeps every scrape self-consistent: the
pulls in a snapshot always sum to its decision count.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

#: Series key of a per-arm, per-context tally: (context id label, arm index).
ArmKey = tuple[str, int]


@dataclass
class HistogramTally:
    """Cumulative-on-read histogram: per-bucket counts (upper bounds, +Inf last), sum, count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # Prometheus buckets are "<= le": bisect_left puts a value equal to a bound in it.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``[(le, cumulative count), ...]`` ending with ``("+Inf", count)``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((_float_label(bound), float(running)))
        out.append(("+Inf", float(self.count)))
        return out

    def copy(self) -> "HistogramTally":
        return HistogramTally(self.bounds, list(self.counts), self.sum, self.count)


def _float_label(value: float) -> str:
    """Bucket bound as prometheus_client writes it (``0.1``, ``1.0``, ``1000.0``)."""
    return floatToGoString(value)


@dataclass
class TallySnapshot:
    """A consistent copy of a :class:`Tally`, taken under its lock."""

    decisions: int
    frequency_switches: int
    pulls: dict[ArmKey, int]
    requests: dict[ArmKey, float]
    arm_energy_j: dict[ArmKey, float]
    device_errors: dict[str, int]
    edp_js: HistogramTally
    latency_s: HistogramTally
    energy_j: HistogramTally


class Tally:
    """Counters and histograms fed by controller events. Thread-safe."""

    def __init__(
        self,
        *,
        edp_bounds: tuple[float, ...],
        latency_bounds: tuple[float, ...],
        energy_bounds: tuple[float, ...],
        error_kinds: tuple[str, ...] = (),
    ) -> None:
        self._lock = threading.Lock()
        self.decisions = 0
        self.frequency_switches = 0
        self.pulls: dict[ArmKey, int] = {}
        self.requests: dict[ArmKey, float] = {}
        self.arm_energy_j: dict[ArmKey, float] = {}
        self.device_errors: dict[str, int] = {kind: 0 for kind in error_kinds}
        self.edp_js = HistogramTally(edp_bounds)
        self.latency_s = HistogramTally(latency_bounds)
        self.energy_j = HistogramTally(energy_bounds)

    def seed(self, pulls: dict[ArmKey, int], frequency_switches: int) -> None:
        """Start from counts made before the exporter was attached (decisions = sum of pulls)."""
        with self._lock:
            for key, n in pulls.items():
                if n > 0:
                    self.pulls[key] = self.pulls.get(key, 0) + n
                    self.decisions += n
            self.frequency_switches += frequency_switches

    def add_decision(self, key: ArmKey, switched: bool) -> None:
        with self._lock:
            self.decisions += 1
            self.pulls[key] = self.pulls.get(key, 0) + 1
            if switched:
                self.frequency_switches += 1

    def add_outcome(
        self, shares: dict[ArmKey, float], energy_j: float, latency_s: float, edp_js: float
    ) -> None:
        with self._lock:
            for key, share in shares.items():
                self.requests[key] = self.requests.get(key, 0.0) + share
                self.arm_energy_j[key] = self.arm_energy_j.get(key, 0.0) + energy_j * share
            self.edp_js.observe(edp_js)
            self.latency_s.observe(latency_s)
            self.energy_j.observe(energy_j)

    def add_error(self, kind: str) -> None:
        with self._lock:
            self.device_errors[kind] = self.device_errors.get(kind, 0) + 1

    def snapshot(self) -> TallySnapshot:
        with self._lock:
            return TallySnapshot(
                decisions=self.decisions,
                frequency_switches=self.frequency_switches,
                pulls=dict(self.pulls),
                requests=dict(self.requests),
                arm_energy_j=dict(self.arm_energy_j),
                device_errors=dict(self.device_errors),
                edp_js=self.edp_js.copy(),
                latency_s=self.latency_s.copy(),
                energy_j=self.energy_j.copy(),
            )
