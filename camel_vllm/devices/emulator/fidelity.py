"""The fidelity table: every published point beside the emulator's prediction for the same work.

For a device profile, each series of :mod:`.measurements` that applies to it is evaluated with
the profile's :class:`~camel_vllm.devices.emulator.roofline.PerformanceModel`:

- ``ratio_to_top``: the published value over the series' top-clock value (time, power, or the
  derived energy per token, time x power) against the emulator's ratio for the same work at the
  same fraction of the profile's top clock;
- ``absolute``: the published value against the emulator's at the stated clock.

A point *holds* when the emulator is within :data:`TOLERANCE` (20 %) of it (of the bound, for a
published bound). ``camel-vllm fidelity`` prints the table; docs/devices.md keeps a copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from camel_vllm.core.events import IterationWork
from camel_vllm.devices.emulator.measurements import Measurements, Series, Work, load_measurements
from camel_vllm.devices.emulator.profiles import DeviceProfile, load_model_profile
from camel_vllm.devices.emulator.roofline import PerformanceModel

#: The issue's fidelity target: within 20 % of each published ratio the profile was not fitted to.
TOLERANCE = 0.2
#: "Minimal throughput loss" (a published best saving) is read as at most this much slower.
MINIMAL_LOSS = 0.05
DEFAULT_MODEL_PROFILE = "llama-3.2-1b"


@dataclass(frozen=True)
class FidelityRow:
    """One published point beside the emulator. ``ratio`` = emulated / published (None where
    not comparable); ``use``: ``fitted``, ``compared`` or ``not comparable``."""

    series: str
    source: str
    model: str
    what: str
    label: str
    freq_mhz: float | None
    published: float
    emulated: float | None
    unit: str
    use: str
    note: str = ""
    bound: str | None = None
    #: The point changes more than the GPU clock (a power mode): compared, counted apart.
    confounded: bool = False

    @property
    def ratio(self) -> float | None:
        if self.emulated is None or self.published <= 0:
            return None
        return self.emulated / self.published

    @property
    def holds(self) -> bool | None:
        """Within TOLERANCE of the point (a bound: on its side, or within TOLERANCE of it)."""
        r = self.ratio
        if r is None or self.use == "not comparable":
            return None
        if self.bound == "upper":
            return r <= 1.0 + TOLERANCE
        if self.bound == "lower":
            return r >= 1.0 / (1.0 + TOLERANCE)
        return abs(math.log(r)) <= math.log(1.0 + TOLERANCE)


def _iteration(work: Work) -> IterationWork:
    if work.phase == "prefill":
        per = max(1, work.tokens // max(1, work.batch))
        return IterationWork({f"r{i}": per for i in range(work.batch)}, per * work.batch, 0)
    return IterationWork({f"r{i}": 1 for i in range(work.batch)}, 0, work.batch, work.context_tokens)


def _value(pm: PerformanceModel, metric: str, work: Work, freq_hz: float) -> float:
    """The emulator's figure for ``metric`` of ``work`` at ``freq_hz`` (s, W, J or tokens/s)."""
    if work.phase == "idle":
        return pm.idle_power_w(freq_hz)
    if work.phase == "stress":
        return pm.power_w(freq_hz, 1.0)
    it = _iteration(work)
    if metric == "time":
        return pm.iteration_time_s(it, freq_hz)
    if metric == "power":
        return pm.iteration_power_w(it, freq_hz)
    if metric == "energy":
        return pm.iteration_time_s(it, freq_hz) * pm.iteration_power_w(it, freq_hz)
    if metric == "throughput":
        return it.num_tokens / pm.iteration_time_s(it, freq_hz)
    raise ValueError(f"no emulated value for metric {metric}")


def _best_saving(pm: PerformanceModel, work: Work, freqs_hz: Sequence[float]) -> float:
    """The largest energy saving of any clock no more than MINIMAL_LOSS slower than the top."""
    top = max(freqs_hz)
    t_top, e_top = _value(pm, "time", work, top), _value(pm, "energy", work, top)
    return max(1.0 - _value(pm, "energy", work, f) / e_top for f in freqs_hz
               if _value(pm, "time", work, f) <= (1.0 + MINIMAL_LOSS) * t_top)


_SCALE = {"ms": 1e3, "s": 1.0, "W": 1.0, "tok/s": 1.0, "ratio": 1.0, "fraction": 1.0}


def series_rows(series: Series, profile: DeviceProfile, default_model: str) -> list[FidelityRow]:
    """The rows of one series against ``profile`` (see the module docstring)."""
    pm = PerformanceModel(profile, load_model_profile(series.model_profile or default_model))
    fmax = profile.max_frequency_hz
    top = next((p for p in series.points if p.clock_fraction == 1.0), None)
    rows = []
    for p in series.points:
        metric = p.metric or series.metric
        work = p.work or series.work
        use = "fitted" if profile.name in p.fitted_to else ("not comparable" if p.not_comparable else "compared")
        note = p.not_comparable or p.confounded or p.caveat
        emulated: float | None = None
        published = p.value
        unit = p.unit
        if series.compare == "ratio_to_top":
            if top is None or p is top or p.clock_fraction is None or work is None:
                continue
            published = p.value / top.value if metric == series.metric else p.value
            unit = "x top"
            f = p.clock_fraction * fmax
            emulated = _value(pm, metric, work, f) / _value(pm, metric, work, fmax)
        elif metric == "best_energy_saving":
            assert work is not None
            emulated = _best_saving(pm, work, profile.frequencies_hz)
        elif work is not None and p.freq_mhz is not None and not p.not_comparable:
            emulated = _value(pm, metric, work, p.freq_mhz * 1e6) * _SCALE.get(unit, 1.0)
        rows.append(FidelityRow(series.id, series.source.id, series.model, series.what, p.label, p.freq_mhz,
                                published, emulated, unit, use, note, p.bound, bool(p.confounded)))
    return rows


def derived_energy_rows(series: Sequence[Series], profile: DeviceProfile, default_model: str) -> list[FidelityRow]:
    """Energy per decode token, time x power, where a source gives both for the same model and
    modes (``derived``: the product of two published ratios, not a published number)."""
    rows = []
    by_key: dict[tuple[str, str], dict[str, Series]] = {}
    for s in series:
        if s.compare == "ratio_to_top" and s.work is not None and s.work.phase == "decode":
            by_key.setdefault((s.source.id, s.model), {})[s.metric] = s
    for (source, model), pair in by_key.items():
        if "time" not in pair or "power" not in pair:
            continue
        t, p = pair["time"], pair["power"]
        t_top = next(x for x in t.points if x.clock_fraction == 1.0)
        p_top = next(x for x in p.points if x.clock_fraction == 1.0)
        powers = {x.label: x for x in p.points}
        for x in t.points:
            if x is t_top or x.label not in powers or x.clock_fraction is None:
                continue
            published = (x.value / t_top.value) * (powers[x.label].value / p_top.value)
            pm = PerformanceModel(profile, load_model_profile(t.model_profile or default_model))
            assert t.work is not None
            f = x.clock_fraction * profile.max_frequency_hz
            emulated = _value(pm, "energy", t.work, f) / _value(pm, "energy", t.work, profile.max_frequency_hz)
            rows.append(FidelityRow(f"{t.id}+power", source, model, "energy per decode token (derived: time x power)",
                                    x.label, x.freq_mhz, published, emulated, "x top", "compared",
                                    x.confounded or "derived from two published ratios", None, bool(x.confounded)))
    return rows


def fidelity_rows(profile: DeviceProfile, *, measurements: Measurements | None = None,
                  board_class: str | None = None, default_model: str | None = None) -> list[FidelityRow]:
    """Every published point that applies to ``profile`` beside the emulator's prediction."""
    data = measurements or load_measurements()
    model = default_model or (profile.serving.model_profile if profile.serving and profile.serving.model_profile
                              else DEFAULT_MODEL_PROFILE)
    chosen = [s for s in data.series if s.applies_to(profile.name, board_class)]
    rows: list[FidelityRow] = []
    for s in chosen:
        rows.extend(series_rows(s, profile, model))
    rows.extend(derived_energy_rows(chosen, profile, model))
    return rows


def summarize(rows: Iterable[FidelityRow]) -> dict[str, int]:
    """Counts: compared points at the GPU clock alone and those that hold; the same for points
    whose power mode changed more than the GPU clock (``confounded``); fitted; not comparable."""
    rows = list(rows)
    compared = [r for r in rows if r.use == "compared" and r.holds is not None and not r.confounded]
    confounded = [r for r in rows if r.use == "compared" and r.holds is not None and r.confounded]
    return {"compared": len(compared), "hold": sum(1 for r in compared if r.holds),
            "confounded": len(confounded), "confounded_hold": sum(1 for r in confounded if r.holds),
            "fitted": sum(1 for r in rows if r.use == "fitted"),
            "not_comparable": sum(1 for r in rows if r.use == "not comparable")}


def format_rows(rows: Sequence[FidelityRow], *, markdown: bool = False) -> str:
    """The table: one line per point (markdown for docs/devices.md)."""
    head = ("series", "point", "MHz", "published", "emulated", "emul/pub", "use", "holds", "note")
    lines = []
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        holds = {True: "yes", False: "NO", None: "-"}[r.holds]
        pub = ("<= " if r.bound == "upper" else ">= " if r.bound == "lower" else "") + _num(r.published)
        cells = (f"{r.model}: {r.what}", r.label, "-" if r.freq_mhz is None else f"{r.freq_mhz:g}",
                 f"{pub} {r.unit}", "-" if r.emulated is None else f"{_num(r.emulated)} {r.unit}", ratio, r.use, holds,
                 r.note)
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [min(60, max(len(h), *(len(c[i]) for c in lines))) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join([fmt.format(*head)] + [fmt.format(*(c[i][:widths[i]] for i in range(len(head) - 1)), c[-1])
                                             for c in lines])


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
