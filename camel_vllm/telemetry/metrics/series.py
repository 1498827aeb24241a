"""Every camel_* series, once: prometheus_client metric objects fed by controller events.

One implementation serves both endpoints. The objects are registered nowhere global
(``registry=None``); the exporter's private registry collects them for the engine core's own
endpoint, and when prometheus_client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
set before it was imported, as vLLM does) the same objects also write the mmap files vLLM's
``/metrics`` merges. Events (a decision, a finished request, a device error) update counters
and histograms on the engine thread; :meth:`CamelSeries.refresh` sets what changes without
events (device energy, power and clock, the steps the clock was switched for, arm availability,
the policy's snapshot) at scrape time and, in multiprocess mode, every second.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from camel_vllm.control.controller import Controller, Decision
from camel_vllm.control.snapshots import PolicySnapshot
from camel_vllm.core.events import RequestOutcome
from camel_vllm.telemetry.metrics import schema as s
from camel_vllm.telemetry.metrics.readout import DeviceReadout, arm_labels, context_label, model_samples


def _metric(spec: s.MetricSpec) -> Counter | Gauge | Histogram:
    if spec.type == "counter":
        return Counter(spec.name, spec.help, spec.labels, registry=None)
    if spec.type == "histogram":
        return Histogram(spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=None)
    return Gauge(spec.name, spec.help, spec.labels, registry=None, multiprocess_mode=spec.multiprocess_mode)


class CamelSeries:
    """The series of one controller; thread-safe (see the module docstring).

    ``energy_source`` labels the energy series; ``info_labels`` are ``camel_controller_info``'s.
    Counts the controller made before the series existed (its pulls, its clock switches) are
    added at once, so ``camel_decisions_total`` is the sum of the pulls from the first scrape.
    """

    def __init__(self, controller: Controller, *, energy_source: str, info_labels: Mapping[str, str]) -> None:
        self.controller = controller
        self.energy_source = energy_source
        # name -> Counter, Gauge or Histogram as the spec says (Any: the checker cannot tell which by name).
        self._m: dict[str, Any] = {spec.name: _metric(spec) for spec in s.ALL_METRICS}
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()
        self._energy_written_j = 0.0
        #: What each model counter series has been increased to so far (the policy's own count).
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}
        self._snapshot_shown = -1
        self._availability: tuple[bool, ...] | None = None
        current = controller.current_arm
        self._selected: tuple[str, str] | None = None if current is None else arm_labels(current)
        self._child(s.CONTROLLER_INFO, *[info_labels[k] for k in s.CONTROLLER_INFO.labels]).set(1.0)
        for kind in s.KNOWN_ERROR_KINDS:
            self._child(s.DEVICE_ERRORS, kind)
        for index, arm in enumerate(controller.arms.arms):
            self._child(s.ARM_SELECTED, *arm_labels(arm)).set(1.0 if index == controller.current_index else 0.0)
        self._child(s.BATCH_CAP).set(float(controller.batch_cap))
        if current is not None and current.freq_hz is not None and not controller.batch_only:
            self._child(s.GPU_FREQUENCY, "target").set(current.freq_hz)
        self._child(s.DECISIONS)
        self._child(s.FREQUENCY_SWITCHES).inc(controller.frequency_switches)
        self._step_switches_shown = controller.step_switches
        self._child(s.STEP_CLOCK_SWITCHES).inc(self._step_switches_shown)
        seed_context = context_label(controller.current_context.id)
        for index, n in enumerate(controller.pulls):
            if n > 0:
                self._child(s.ARM_PULLS, *arm_labels(controller.arms[index]), seed_context).inc(n)
                self._child(s.DECISIONS).inc(n)
        # Histograms show (empty) from the start.
        self._child(s.REQUEST_EDP, energy_source)
        self._child(s.REQUEST_LATENCY)
        self._child(s.REQUEST_ENERGY, energy_source)

    def _child(self, spec: s.MetricSpec, *labels: str) -> Any:
        return self._named(spec.name, labels)

    def _named(self, name: str, labels: tuple[str, ...]) -> Any:
        """``metric.labels(*labels)``, cached: prometheus_client's lookup validates every call."""
        key = (name, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._m[name].labels(*labels) if labels else self._m[name]
        return child

    # ------------------------------------------------------------------ events
    def on_decision(self, decision: Decision) -> None:
        child = self._child
        labels = arm_labels(decision.arm)
        with self._lock:  # pulls and decisions move together: a scrape never sees one without the other
            child(s.ARM_PULLS, *labels, context_label(decision.context.id)).inc()
            child(s.DECISIONS).inc()
            previous, self._selected = self._selected, labels
        if decision.frequency_switched:
            child(s.FREQUENCY_SWITCHES).inc()
        if previous is not None and previous != labels:
            child(s.ARM_SELECTED, *previous).set(0.0)
        child(s.ARM_SELECTED, *labels).set(1.0)
        if decision.arm.freq_hz is not None and not self.controller.batch_only:
            child(s.GPU_FREQUENCY, "target").set(decision.arm.freq_hz)
        child(s.BATCH_CAP).set(float(decision.arm.max_batch))

    def on_outcome(self, outcome: RequestOutcome) -> None:
        child, source = self._child, self.energy_source
        arms = self.controller.arms
        with self._lock:
            for (context, index), share in outcome.arm_shares.items():
                labels = (*arm_labels(arms[index]), context_label(context.id))
                child(s.ARM_REQUESTS, *labels).inc(share)
                child(s.ARM_ENERGY, *labels, source).inc(outcome.energy_j * share)
            child(s.REQUEST_EDP, source).observe(outcome.edp_js)
            child(s.REQUEST_LATENCY).observe(outcome.latency_s)
            child(s.REQUEST_ENERGY, source).observe(outcome.energy_j)

    def on_device_error(self, kind: str) -> None:
        self._child(s.DEVICE_ERRORS, kind).inc()

    # ----------------------------------------------------------------- refresh
    def refresh(self, device: DeviceReadout, snapshot: PolicySnapshot | None) -> None:
        """Write a device reading, the arms' availability and (if new) the policy's snapshot."""
        child = self._child
        with self._lock:
            if device.energy_j is not None:  # a counter: it grows by what the (monotonic) reading grew
                delta_j = max(0.0, device.energy_j - self._energy_written_j)
                self._energy_written_j = max(self._energy_written_j, device.energy_j)
                child(s.ENERGY, self.energy_source).inc(delta_j)  # inc(0) shows a device at 0 J
            if device.power_w is not None:
                child(s.POWER, self.energy_source).set(device.power_w)
            if device.current_freq_hz is not None:
                child(s.GPU_FREQUENCY, "current").set(device.current_freq_hz)
            switches = self.controller.step_switches  # steps switch on the engine thread, no event each
            child(s.STEP_CLOCK_SWITCHES).inc(max(0, switches - self._step_switches_shown))
            self._step_switches_shown = max(self._step_switches_shown, switches)
            self._refresh_availability()
            if snapshot is not None and snapshot.number != self._snapshot_shown:
                self._snapshot_shown = snapshot.number
                self._show(snapshot)

    def _refresh_availability(self) -> None:
        arms = self.controller.arms
        now = tuple(arms.available)
        if now == self._availability:
            return
        self._availability = now
        for arm, ok in zip(arms.arms, now, strict=False):
            self._child(s.ARM_AVAILABLE, *arm_labels(arm)).set(1.0 if ok else 0.0)

    def _show(self, snapshot: PolicySnapshot) -> None:
        """The policy's estimates (an arm's gauges keep their last value) and its model's series;
        the model's running counts are counters raised to them, never lowered."""
        arms = self.controller.arms
        for est in snapshot.estimates:
            arm = (*arm_labels(arms[est.arm_index]), context_label(est.context_id))
            self._child(s.ARM_COST_MEAN, *arm).set(est.mean)
            self._child(s.ARM_COST_STD, *arm).set(est.std)
        for name, labels, value in model_samples(snapshot.model):
            key = (name, tuple(labels))
            target = self._named(*key)
            if isinstance(self._m[name], Counter):
                last = self._counted.get(key, 0.0)
                self._counted[key] = max(last, value)
                target.inc(max(0.0, value - last))  # inc(0) creates the series
            else:
                target.set(value)

    # ----------------------------------------------------------------- collect
    def collect(self) -> Iterable[Metric]:
        """Every family, as the exposition shows it (without prometheus_client's ``_created``
        samples, which the multiprocess merge does not write either); one consistent copy."""
        with self._lock:
            families = [family for metric in self._m.values() for family in metric.collect()]
        for family in families:
            family.samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
            yield family

    def describe(self) -> Iterable[Metric]:
        return [family for metric in self._m.values() for family in metric.describe()]
