"""prometheus_client's multiprocess mode, for vLLM's ``/metrics``: whether it is on, and the
thread that keeps the event-less series fresh in its files.

vLLM's API server serves ``/metrics`` from its own process; the engine core's series reach it
only when ``PROMETHEUS_MULTIPROC_DIR`` is set before launch: every process then writes its
values to mmap files there and the API server merges them with ``MultiProcessCollector``. The
camel series (:mod:`~camel_vllm.telemetry.metrics.series`) write those files themselves in that
mode; what changes without events (device energy, power, clock; the policy's snapshot) is
refreshed by a small thread every :data:`REFRESH_S` seconds, so the engine's iteration path
never reads the device for metrics. Gauges use ``livemostrecent``: the value last written by a
live process. Across data-parallel ranks counters and histograms are summed over engine cores,
gauges show the most recent rank; per-rank values come from each rank's own endpoint.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

from prometheus_client import values

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


class Refresher:
    """Calls ``refresh`` every ``every_s`` seconds on a daemon thread until :meth:`close`."""

    def __init__(self, refresh: Callable[[], None], every_s: float = REFRESH_S) -> None:
        self._refresh = refresh
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camel-metrics-multiproc", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self._refresh()
            except Exception:  # keep refreshing: a metrics hiccup must not go unnoticed silently
                logger.exception("camel: refreshing multiprocess metrics failed")

    def close(self) -> None:
        """Stop the thread. Idempotent."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=5.0)
