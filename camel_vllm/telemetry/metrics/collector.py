"""The scrape-time collector behind the engine core's own endpoint.

Nothing here runs per iteration: on each scrape it copies the event tally, reads the device
once and asks the policy for its estimates, and builds metric families from those. It owns
no prometheus_client metric objects, so it never writes multiprocess files and two
controllers in one process (each with its own :class:`CollectorRegistry`) cannot collide.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from camel_vllm.control.controller import Controller
from camel_vllm.telemetry.metrics import schema as s
from camel_vllm.telemetry.metrics.readout import ControllerReader, arm_labels, context_label, model_samples
from camel_vllm.telemetry.metrics.tally import HistogramTally, Tally, TallySnapshot


#: Model series that are counters: set from the policy's running counts (see schema.MODEL_METRICS).
_MODEL_COUNTERS = frozenset(spec.name for spec in s.MODEL_METRICS if spec.type == "counter")


def _family(spec: s.MetricSpec) -> Metric:
    if spec.type == "histogram":
        return HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    return _series(spec)


def _series(spec: s.MetricSpec) -> CounterMetricFamily | GaugeMetricFamily:
    """The family of a counter or gauge spec: one value per sample (histograms: :func:`_histogram`)."""
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    if spec.type == "histogram":
        raise TypeError(f"{spec.name} is a histogram: its family is built by _histogram")
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _histogram(spec: s.MetricSpec, labels: list[str], tally: HistogramTally) -> Metric:
    family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    family.add_metric(labels, tally.cumulative(), tally.sum)
    return family


class CamelCollector(Collector):
    """Builds every camel_* family from the tally, the controller and the device at scrape time."""

    def __init__(
        self,
        controller: Controller,
        tally: Tally,
        reader: ControllerReader,
        *,
        energy_source: str,
        info_labels: Mapping[str, str],
    ) -> None:
        self.controller = controller
        self.tally = tally
        self.reader = reader
        self.energy_source = energy_source
        self.info_labels = dict(info_labels)
        #: The value each model counter series last showed (scrapes run one at a time).
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}

    def describe(self) -> Iterable[Metric]:
        # Registering must not trigger a device read or a policy call.
        return [_family(spec) for spec in s.ALL_METRICS]

    def collect(self) -> Iterable[Metric]:
        readout = self.reader.read_device()  # first, so a failed read is counted in this scrape
        snap = self.tally.snapshot()
        yield from self._arm_families(snap)
        yield from self._estimate_families()
        yield from self._state_families(readout.current_freq_hz)
        yield from self._energy_families(readout.energy_j, readout.power_w)
        src = [self.energy_source]
        yield _histogram(s.REQUEST_EDP, src, snap.edp_js)
        yield _histogram(s.REQUEST_LATENCY, [], snap.latency_s)
        yield _histogram(s.REQUEST_ENERGY, src, snap.energy_j)
        yield from self._event_counters(snap)
        yield from self._model_families()

    # ------------------------------------------------------------------ families
    def _arm_families(self, snap: TallySnapshot) -> Iterable[Metric]:
        arms = self.controller.arms
        pulls, requests, energy = _series(s.ARM_PULLS), _series(s.ARM_REQUESTS), _series(s.ARM_ENERGY)
        for (ctx, index), n in sorted(snap.pulls.items()):
            pulls.add_metric([*arm_labels(arms[index]), ctx], float(n))
        for (ctx, index), weight in sorted(snap.requests.items()):
            requests.add_metric([*arm_labels(arms[index]), ctx], weight)
        for (ctx, index), j in sorted(snap.arm_energy_j.items()):
            energy.add_metric([*arm_labels(arms[index]), ctx, self.energy_source], j)
        yield from (pulls, requests, energy)

    def _estimate_families(self) -> Iterable[Metric]:
        arms = self.controller.arms
        mean, std = _series(s.ARM_COST_MEAN), _series(s.ARM_COST_STD)
        for est in self.reader.estimates():
            labels = [*arm_labels(arms[est.arm_index]), context_label(est.context_id)]
            mean.add_metric(labels, est.mean)
            std.add_metric(labels, est.std)
        yield from (mean, std)

    def _state_families(self, current_freq_hz: float | None) -> Iterable[Metric]:
        controller = self.controller
        arms = controller.arms
        current = controller.current_index
        selected, available = _series(s.ARM_SELECTED), _series(s.ARM_AVAILABLE)
        for index, arm in enumerate(arms.arms):
            selected.add_metric(list(arm_labels(arm)), 1.0 if index == current else 0.0)
            available.add_metric(list(arm_labels(arm)), 1.0 if arms.available[index] else 0.0)
        freq = _series(s.GPU_FREQUENCY)
        in_force = controller.current_arm
        if in_force is not None and in_force.freq_hz is not None and not controller.batch_only:
            freq.add_metric(["target"], in_force.freq_hz)
        if current_freq_hz is not None:
            freq.add_metric(["current"], current_freq_hz)
        cap = _series(s.BATCH_CAP)
        cap.add_metric([], float(controller.batch_cap))
        info = _series(s.CONTROLLER_INFO)
        info.add_metric([self.info_labels[k] for k in s.CONTROLLER_INFO.labels], 1.0)
        yield from (selected, available, freq, cap, info)

    def _energy_families(self, energy_j: float | None, power_w: float | None) -> Iterable[Metric]:
        energy, power = _series(s.ENERGY), _series(s.POWER)
        if energy_j is not None:
            energy.add_metric([self.energy_source], energy_j)
        if power_w is not None:
            power.add_metric([self.energy_source], power_w)
        yield from (energy, power)

    def _model_families(self) -> Iterable[Metric]:
        families = {spec.name: _series(spec) for spec in s.MODEL_METRICS}
        counted = self._counted
        for name, labels, value in model_samples(self.reader.model_readout()):
            if name in _MODEL_COUNTERS:  # the policy's running count, never shown going back
                key = (name, tuple(labels))
                value = counted[key] = max(value, counted.get(key, 0.0))
            families[name].add_metric(labels, value)
        yield from families.values()

    def _event_counters(self, snap: TallySnapshot) -> Iterable[Metric]:
        decisions, switches, errors = _series(s.DECISIONS), _series(s.FREQUENCY_SWITCHES), _series(s.DEVICE_ERRORS)
        decisions.add_metric([], float(snap.decisions))
        switches.add_metric([], float(snap.frequency_switches))
        for kind, n in sorted(snap.device_errors.items()):
            errors.add_metric([kind], float(n))
        yield from (decisions, switches, errors)
