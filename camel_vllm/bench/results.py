"""The benchmark result format shared by ``bench sim`` and ``bench replay``.

``policies[NAME]`` holds a fixed set of fields (:class:`PolicyResult`); anything else a mode
wants to record goes in the top-level ``details[NAME]`` and ``notes``, so consumers can rely
on the per-policy schema. Units: J, s, J*s. ``emulated`` is true whenever energy came from the
emulator (every figure on our machines).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from camel_vllm.sim.records import RequestRecord

UNITS = {"energy_j": "J", "latency_s": "s", "ttft_s": "s", "edp_js": "J*s"}


#: ``PolicyResult.from_records(mean_edp_js=FROM_RECORDS)``: the mean of the records' own EDP.
FROM_RECORDS: Any = object()


@dataclass
class PolicyResult:
    """Issue 6 item 3, one policy. ``arms`` maps ``"MHZ/BATCH"`` to decisions that chose it.

    ``energy_j``, ``mean_edp_js``, ``arm_switches`` and ``arms`` are ``None`` (JSON null) where
    they were not measured: a replay against a server without camel's metrics.
    """

    requests_total: int
    requests_completed: int
    energy_j: float | None
    mean_latency_s: float
    p50_latency_s: float
    p99_latency_s: float
    mean_ttft_s: float
    mean_edp_js: float | None
    arm_switches: int | None
    arms: dict[str, int] | None = field(default_factory=dict)

    @classmethod
    def from_records(
        cls, records: Sequence[RequestRecord], *, requests_total: int, energy_j: float | None,
        arm_switches: int | None, arms: Mapping[str, int] | None, mean_edp_js: Any = FROM_RECORDS,
    ) -> "PolicyResult":
        """Summarise completed records. ``mean_edp_js`` overrides the per-record mean (replay;
        ``None``: not measured)."""
        done = [r for r in records if r.ok]
        lat = sorted(r.latency_s for r in done)
        ttfts = [r.ttft_s for r in done if r.ttft_s is not None]
        edps = [r.edp_js for r in done if not math.isnan(r.energy_j)]
        if mean_edp_js is FROM_RECORDS:
            mean_edp_js = _mean(edps)
        return cls(
            requests_total=requests_total,
            requests_completed=len(done),
            energy_j=None if energy_j is None else float(energy_j),
            mean_latency_s=_mean(lat),
            p50_latency_s=percentile(lat, 50.0),
            p99_latency_s=percentile(lat, 99.0),
            mean_ttft_s=_mean(ttfts),
            mean_edp_js=None if mean_edp_js is None else float(mean_edp_js),
            arm_switches=None if arm_switches is None else int(arm_switches),
            arms=None if arms is None else {k: int(v) for k, v in arms.items() if v},
        )


@dataclass
class BenchResult:
    """A whole benchmark: one trace, several policies on the same requests."""

    trace: str
    device: str
    model: str
    requests: int
    emulated: bool
    policies: dict[str, PolicyResult]
    mode: str = "sim"
    units: dict[str, str] = field(default_factory=lambda: dict(UNITS))
    notes: list[str] = field(default_factory=list)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _clean(dataclasses.asdict(self))

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BenchResult":
        policies = {k: PolicyResult(**v) for k, v in data["policies"].items()}
        rest = {k: v for k, v in data.items() if k != "policies"}
        return cls(policies=policies, **rest)

    @classmethod
    def read(cls, path: str) -> "BenchResult":
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _clean(value: Any) -> Any:
    """NaN/inf -> None so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def reduction_pct(value: float, baseline: float) -> float:
    """How much lower ``value`` is than ``baseline``, in percent (positive = better)."""
    return 100.0 * (baseline - value) / baseline if baseline else float("nan")


def format_table(result: BenchResult, *, baseline: str | None = "default") -> str:
    """A fixed-width text table of the main figures, labelled emulated where they are.

    "vs BASELINE" is the mean-EDP change against the baseline policy; where the run paired
    the requests (``details[NAME]["edp_vs_BASELINE"]``, :mod:`camel_vllm.bench.paired`) it is
    the paired change (on the requests both completed) with its batch-means standard error,
    e.g. ``-20.9±1.2%``. A column no policy measured (``None``: a replay without camel's
    metrics) is left out.
    """
    tag = " (emulated)" if result.emulated else ""
    policies = result.policies.values()
    show_energy = any(p.energy_j is not None for p in policies)
    show_edp = any(p.mean_edp_js is not None for p in policies)
    show_switches = any(p.arm_switches is not None for p in policies)
    head = f"{'policy':<16}{'done':>9}" + (f"{'energy_J':>12}" if show_energy else "") + \
        f"{'mean_lat_s':>11}{'p99_lat_s':>10}{'ttft_s':>8}" + \
        (f"{'mean_EDP_Js':>13}{'vs ' + (baseline or '-'):>14}" if show_edp else "") + \
        (f"{'switches':>9}" if show_switches else "")
    lines = [f"{result.trace} on {result.device} / {result.model}, {result.requests} requests{tag}", head]
    base = result.policies.get(baseline) if baseline else None
    for name, p in result.policies.items():
        vs = ""
        if base and name != baseline and p.mean_edp_js is not None and base.mean_edp_js is not None:
            vs = f"{-reduction_pct(p.mean_edp_js, base.mean_edp_js):+.1f}%"
        paired = result.details.get(name, {}).get(f"edp_vs_{baseline}")
        if vs and paired:  # the paired change and its error, on the requests both completed
            vs = f"{paired['diff_pct']:+.1f}±{paired['stderr_pct']:.1f}%"
        lines.append(
            f"{name:<16}{p.requests_completed:>4}/{p.requests_total:<4}"
            + (f"{_num(p.energy_j):>12.1f}" if show_energy else "")
            + f"{p.mean_latency_s:>11.3f}{p.p99_latency_s:>10.3f}{p.mean_ttft_s:>8.3f}"
            + (f"{_num(p.mean_edp_js):>13.3f}{vs:>14}" if show_edp else "")
            + (f"{'-' if p.arm_switches is None else p.arm_switches:>9}" if show_switches else "")
        )
    return "\n".join(lines)


def _num(value: float | None) -> float:
    return float("nan") if value is None else value
