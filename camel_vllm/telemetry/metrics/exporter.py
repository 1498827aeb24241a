"""The metrics exporter: a controller listener that serves camel_* series over HTTP.

:meth:`MetricsExporter.start` (called by :func:`camel_vllm.wiring.build.build_controller` when
``metrics_port`` is set) serves the engine core's own endpoint on
``metrics_host:metrics_port`` from a private :class:`CollectorRegistry` (never the global
one, so several controllers in one process do not collide); in prometheus_client's
multiprocess mode the same series (:mod:`~camel_vllm.telemetry.metrics.series`) also land in
the files vLLM's ``/metrics`` merges. Per-event work is a few counter increments (mmap writes in
multiprocess mode); the device is read at scrape time and the policy's beliefs come from the
controller's snapshot (:mod:`camel_vllm.control.snapshots`), never from the policy itself.
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from camel_vllm.control.controller import Controller, Decision
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.core.events import RequestOutcome
from camel_vllm.telemetry.metrics.multiproc import Refresher, multiprocess_dir, multiprocess_ready
from camel_vllm.telemetry.metrics.readout import ControllerReader, DeviceReadout
from camel_vllm.telemetry.metrics.series import CamelSeries

logger = logging.getLogger("vllm.camel")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def controller_info_labels(controller: Controller, config: CamelConfig | None) -> dict[str, str]:
    """Label values of ``camel_controller_info`` (see :data:`schema.CONTROLLER_INFO`)."""
    info = controller.device.info()
    return {
        "policy": str(controller.policy.name),
        "cost": str(getattr(controller.cost, "name", type(controller.cost).__name__)),
        "device": info.kind,
        "device_name": info.name,
        "profile": info.profile or "none",
        "model_profile": config.model_profile if config is not None else "none",
        "energy_source": info.energy_source,
        "energy_method": info.energy_method,
        "emulated": _flag(info.emulated),
        "contextual": _flag(bool(getattr(controller.context_model, "contextual", False))),
        "epoch_iterations": str(controller.epoch_iterations),
    }


def serve_http(host: str, port: int, registry: CollectorRegistry) -> tuple[Any, Any]:
    """``prometheus_client.start_http_server`` with its errors as one-line :class:`ConfigError`s:
    a taken port names ``metrics_port``; any other failure (an address not on this machine, a
    host name that does not resolve) names ``metrics_host``. Returns (server, thread)."""
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                "metrics_port", port,
                f"port already in use on {host} (choose another metrics_port, or 0 for any free port)",
            ) from err
        raise ConfigError("metrics_host", host,
                          f"cannot serve metrics on {host}:{port}: {err.strerror or err}") from err


class _ScrapeCollector(Collector):
    """The own endpoint's view of the series: refreshed from the device and the policy's
    snapshot, then collected, at each scrape."""

    def __init__(self, series: CamelSeries, refresh: Callable[[], None]) -> None:
        self.series, self.refresh = series, refresh

    def describe(self) -> Iterable[Metric]:
        return self.series.describe()  # registering must not read the device

    def collect(self) -> Iterable[Metric]:
        self.refresh()
        return self.series.collect()


class MetricsExporter:
    """A :class:`~camel_vllm.control.controller.ControllerListener` exporting Prometheus metrics.

    Built unstarted by the constructor (``registry`` can then be scraped in-process with
    ``prometheus_client.generate_latest``); :meth:`start` also serves it over HTTP. ``port``
    is the port actually bound (``metrics_port: 0`` picks a free one).
    """

    def __init__(self, controller: Controller, config: CamelConfig | None = None) -> None:
        self.controller = controller
        self.config = config
        self.energy_source = controller.device.info().energy_source
        self.info_labels = controller_info_labels(controller, config)
        self.series = CamelSeries(controller, energy_source=self.energy_source, info_labels=self.info_labels)
        controller.snapshots.read()  # a reader from now on: the engine also copies the policy as it drains
        self.reader = ControllerReader(controller, on_error=self.on_device_error)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ScrapeCollector(self.series, self.refresh))
        self.host: str | None = None
        self.port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._refresher: Refresher | None = None
        self._closed = False

    # ------------------------------------------------------------------- start
    @classmethod
    def start(cls, config: CamelConfig, controller: Controller) -> "MetricsExporter":
        """Serve on ``config.metrics_host:config.metrics_port``; write multiprocess files if asked.

        Raises :class:`ConfigError` (one line) when the port is taken or the host unusable.
        """
        port = 0 if config.metrics_port is None else config.metrics_port
        exporter = cls(controller, config)
        exporter.serve(config.metrics_host, port)
        try:
            exporter.start_multiprocess()
        except BaseException:
            exporter.close()
            raise
        return exporter

    def serve(self, host: str, port: int) -> None:
        """Start the HTTP endpoint on a daemon thread."""
        server, thread = serve_http(host, port, self.registry)
        self._server, self._thread = server, thread
        self.host, self.port = host, int(server.server_port)
        logger.info("camel: Prometheus metrics on http://%s:%d/metrics", host, self.port)

    def start_multiprocess(self) -> bool:
        """Write the series for vLLM's merged ``/metrics`` if ``PROMETHEUS_MULTIPROC_DIR`` is set."""
        folder = multiprocess_dir()
        if folder is None:
            return False
        if not multiprocess_ready():
            logger.warning(
                "camel: PROMETHEUS_MULTIPROC_DIR=%s was set after prometheus_client was imported; "
                "camel metrics are served on the camel endpoint only", folder,
            )
            return False
        self.refresh()
        self._refresher = Refresher(self.refresh)
        logger.info("camel: also writing metrics to the multiprocess folder %s", folder)
        return True

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        return f"http://{self.host}:{self.port}/metrics"

    @property
    def multiprocess(self) -> bool:
        """Whether the series are also kept fresh in vLLM's multiprocess files."""
        return self._refresher is not None

    def refresh(self) -> None:
        """Read the device, take the controller's latest policy snapshot, write both."""
        self.series.refresh(self.reader.read_device(), self.controller.snapshots.read())

    # ---------------------------------------------------------------- listener
    def on_decision(self, decision: Decision) -> None:
        self.series.on_decision(decision)

    def on_outcome(self, outcome: RequestOutcome) -> None:
        self.series.on_outcome(outcome)

    def on_device_error(self, kind: str) -> None:
        self.series.on_device_error(kind)

    def close(self) -> None:
        """Stop the HTTP server and the refresh thread. Idempotent. The policy's last snapshot
        (the controller takes one as it closes) is written; the device is not read again: the
        controller closes it after its listeners, but a scrape must not race its close."""
        if self._closed:
            return
        self._closed = True
        if self._refresher is not None:
            self._refresher.close()
            self.series.refresh(DeviceReadout(None, None, None), self.controller.snapshots.latest)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5.0)
