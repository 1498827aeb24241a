"""Writing camel_* series in prometheus_client's multiprocess mode, for vLLM's ``/metrics``.

vLLM's API server serves ``/metrics`` from its own process; the engine core's series reach it
only when ``PROMETHEUS_MULTIPROC_DIR`` is set before launch: every process then writes its
values to mmap files there and the API server merges them with ``MultiProcessCollector``
(prometheus_client's multiprocess mode, which vLLM's ``/metrics`` uses). This writer owns
prometheus_client metric objects that are *not* registered anywhere (``registry=None``): they
exist only to write those files.

Counters and histograms are updated on controller events (a few mmap writes per decision
and per finished request). Values that change without events (device energy, power, clock),
the policy's posterior and its model's running counts (counters increased by what they grew)
are refreshed by a small thread every :data:`REFRESH_S` seconds,
so the engine's iteration path never reads the device for metrics. Gauges use
``livemostrecent``: the value last written by a live process.

Merging across data-parallel ranks: counters and histograms are summed over engine cores,
gauges show the most recent rank; per-rank values come from each rank's own endpoint.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Mapping

from prometheus_client import Counter, Gauge, Histogram, values

from camel_vllm.control.controller import Controller, Decision
from camel_vllm.core.events import RequestOutcome
from camel_vllm.telemetry.metrics import schema as s
from camel_vllm.telemetry.metrics.readout import ControllerReader, arm_labels, context_label, model_samples

logger = logging.getLogger("vllm.camel")

#: Seconds between refreshes of device readings and posterior gauges in the multiprocess files.
#: Prometheus scrapes every 5-15 s, so 1 s is fresh enough and costs one device read a second.
REFRESH_S = 1.0

ENV_VARS = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


def multiprocess_dir() -> str | None:
    """The multiprocess folder named by the environment, or ``None``."""
    for name in ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def multiprocess_ready() -> bool:
    """True if prometheus_client writes mmap files in this process.

    prometheus_client picks its value class when it is first imported: a folder set in the
    environment after that is not used (vLLM's ``setup_multiprocess_prometheus`` sets it
    before importing the engine, so this holds inside vLLM).
    """
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def _metric(spec: s.MetricSpec) -> Counter | Gauge | Histogram:
    if spec.type == "counter":
        return Counter(spec.name, spec.help, spec.labels, registry=None)
    if spec.type == "histogram":
        return Histogram(spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=None)
    return Gauge(spec.name, spec.help, spec.labels, registry=None, multiprocess_mode=spec.multiprocess_mode)


class MultiprocessWriter:
    """Mirrors the exporter's series into the multiprocess files; see the module docstring."""

    def __init__(
        self,
        controller: Controller,
        reader: ControllerReader,
        *,
        energy_source: str,
        info_labels: Mapping[str, str],
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.controller = controller
        self.reader = reader
        self.energy_source = energy_source
        self.refresh_s = refresh_s
        # name -> Counter, Gauge or Histogram as the spec says; the checker cannot tell which
        # per name, so the values are Any (as the cached children below).
        self._m: dict[str, Any] = {spec.name: _metric(spec) for spec in s.ALL_METRICS}
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()
        self._energy_written_j = 0.0
        #: What each model counter series has been increased to so far (the policy's count).
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}
        self._estimates_dirty = True
        current = controller.current_arm
        self._selected: tuple[str, str] | None = None if current is None else arm_labels(current)
        self._availability: tuple[bool, ...] | None = None
        self._stop = threading.Event()
        self._m[s.CONTROLLER_INFO.name].labels(*[info_labels[k] for k in s.CONTROLLER_INFO.labels]).set(1.0)
        for kind in s.KNOWN_ERROR_KINDS:
            self._m[s.DEVICE_ERRORS.name].labels(kind)
        for index, arm in enumerate(controller.arms.arms):
            self._m[s.ARM_SELECTED.name].labels(*arm_labels(arm)).set(
                1.0 if index == controller.current_index else 0.0
            )
        self._m[s.BATCH_CAP.name].set(float(controller.batch_cap))
        # Histograms show (empty) from the start, as on the own endpoint.
        self._child(s.REQUEST_EDP, energy_source)
        self._child(s.REQUEST_LATENCY)
        self._child(s.REQUEST_ENERGY, energy_source)
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="camel-metrics-multiproc", daemon=True)
        self._thread.start()

    def _child(self, spec: s.MetricSpec, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: prometheus_client's lookup validates every call."""
        key = (spec.name, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._m[spec.name].labels(*labels) if labels else self._m[spec.name]
        return child

    # ------------------------------------------------------------------ events
    def on_decision(self, decision: Decision) -> None:
        child = self._child
        labels = arm_labels(decision.arm)
        child(s.ARM_PULLS, *labels, context_label(decision.context.id)).inc()
        child(s.DECISIONS).inc()
        if decision.frequency_switched:
            child(s.FREQUENCY_SWITCHES).inc()
        with self._lock:
            previous, self._selected = self._selected, labels
        if previous is not None and previous != labels:
            child(s.ARM_SELECTED, *previous).set(0.0)
        child(s.ARM_SELECTED, *labels).set(1.0)
        if decision.arm.freq_hz is not None and not self.controller.batch_only:
            child(s.GPU_FREQUENCY, "target").set(decision.arm.freq_hz)
        child(s.BATCH_CAP).set(float(decision.arm.max_batch))

    def on_outcome(self, outcome: RequestOutcome) -> None:
        child, source = self._child, self.energy_source
        arms = self.controller.arms
        for (context, index), share in outcome.arm_shares.items():
            labels = (*arm_labels(arms[index]), context_label(context.id))
            child(s.ARM_REQUESTS, *labels).inc(share)
            child(s.ARM_ENERGY, *labels, source).inc(outcome.energy_j * share)
        child(s.REQUEST_EDP, source).observe(outcome.edp_js)
        child(s.REQUEST_LATENCY).observe(outcome.latency_s)
        child(s.REQUEST_ENERGY, source).observe(outcome.energy_j)
        with self._lock:
            self._estimates_dirty = True

    def on_device_error(self, kind: str) -> None:
        self._child(s.DEVICE_ERRORS, kind).inc()

    # ----------------------------------------------------------------- refresh
    def refresh(self) -> None:
        """Write device readings, availability and (if changed) posterior estimates."""
        m = self._m
        readout = self.reader.read_device()
        if readout.energy_j is not None:
            with self._lock:
                delta_j = readout.energy_j - self._energy_written_j
                self._energy_written_j = max(self._energy_written_j, readout.energy_j)
            # inc(0) creates the series, so a device at 0 J still shows its counter.
            m[s.ENERGY.name].labels(self.energy_source).inc(max(0.0, delta_j))
        if readout.power_w is not None:
            m[s.POWER.name].labels(self.energy_source).set(readout.power_w)
        if readout.current_freq_hz is not None:
            m[s.GPU_FREQUENCY.name].labels("current").set(readout.current_freq_hz)
        self._refresh_availability()
        with self._lock:
            dirty, self._estimates_dirty = self._estimates_dirty, False
        if dirty:
            self._refresh_estimates()
        for name, labels, value in model_samples(self.reader.model_readout()):
            metric = self._m[name]
            child = metric.labels(*labels) if labels else metric
            if isinstance(metric, Counter):  # a policy's running count: add what it grew by
                key = (name, tuple(labels))
                with self._lock:
                    last = self._counted.get(key)
                    self._counted[key] = value if last is None else max(last, value)
                child.inc(max(0.0, value - (last or 0.0)))  # inc(0) creates the series
            else:
                child.set(value)

    def _refresh_availability(self) -> None:
        arms = self.controller.arms
        now = tuple(arms.available)
        if now == self._availability:
            return
        self._availability = now
        for arm, ok in zip(arms.arms, now, strict=False):
            self._m[s.ARM_AVAILABLE.name].labels(*arm_labels(arm)).set(1.0 if ok else 0.0)

    def _refresh_estimates(self) -> None:
        arms = self.controller.arms
        mean, std = self._m[s.ARM_COST_MEAN.name], self._m[s.ARM_COST_STD.name]
        for est in self.reader.estimates():
            labels = (*arm_labels(arms[est.arm_index]), context_label(est.context_id))
            mean.labels(*labels).set(est.mean)
            std.labels(*labels).set(est.std)

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception:  # keep refreshing: a metrics hiccup must not go unnoticed silently
                logger.exception("camel: refreshing multiprocess metrics failed")

    def close(self) -> None:
        """Stop the refresh thread and write the final posterior. Idempotent.

        The device is not read again: the controller has closed it before its listeners.
        """
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            self._refresh_estimates()
        except Exception:
            logger.exception("camel: last refresh of multiprocess metrics failed")
