"""A background power sampler that integrates watts into a monotonic joule counter.

Sensors such as the Jetson INA3221 give power, not energy. :class:`PowerSampler` reads power
every ``period_s`` on its own thread and integrates with the trapezoid rule. A failed read
(``OSError``, e.g. EIO from an I2C sensor, or a rail file that disappeared; a
:class:`~camel_vllm.devices.base.DeviceError`, e.g. an NVML power query that failed) is skipped and
counted; the next good reading integrates over the gap (linear interpolation between the
readings either side), so the counter never goes backwards. Every failed read and the
reading that closes a gap count in :attr:`PowerSampler.gaps`, which
:meth:`PowerSampler.reading` returns with the counter, so the controller knows which
intervals were not measured (see :mod:`camel_vllm.control.controller`). Reads that keep failing
(:data:`FAILING_AFTER_READS` in a row) are reported in one warning line per episode, and
one line when the sensor reads again. Readers (the engine thread, the metrics exporter's
HTTP thread) take one fresh sample when the last is older than half a period, so a counter
read right after an iteration is at most half a period stale.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from camel_vllm.devices.base import DeviceError, EnergyReading

logger = logging.getLogger("vllm.camel")

#: Default rate (Hz) when neither the user nor the sensor says otherwise; the sensor's own
#: ``update_interval`` (the Linux hwmon ABI) wins when it is slower.
DEFAULT_SAMPLE_HZ = 50.0
#: Failed reads in a row after which the sensor "keeps failing": one warning line, and one
#: ``failing`` episode for the controller's ``camel_device_errors_total{kind="sensor"}``.
#: 10 reads are 0.2 s at the default 50 Hz: past a single I2C hiccup, well inside a gap.
FAILING_AFTER_READS = 10


def sample_period_s(sample_hz: float | None, sensor_update_s: float | None) -> float:
    """The sampling period: ``sample_hz`` if given (> 0), else 50 Hz or the sensor's interval, whichever is slower."""
    if sample_hz:
        return 1.0 / float(sample_hz)
    period_s = 1.0 / DEFAULT_SAMPLE_HZ
    if sensor_update_s and sensor_update_s > period_s:
        period_s = sensor_update_s
    return period_s


class PowerSampler:
    """Integrates ``read_power_w()`` (W) into joules; thread-safe; ``close`` is idempotent."""

    def __init__(
        self,
        read_power_w: Callable[[], float],
        period_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "camel-power-sampler",
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self._read = read_power_w
        self._clock = clock
        self._name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy_j = 0.0
        self._last: tuple[float, float] | None = None  # (time_s, power_w)
        self.samples = 0
        self.skipped = 0
        #: Monotonic: failed reads plus readings that closed a gap (see the module docstring).
        self.gaps = 0
        #: Episodes of reads that kept failing (FAILING_AFTER_READS in a row), each reported once.
        self.failing = 0
        self._failed_in_row = 0
        self._first_failure_s: float | None = None

    def start(self) -> "PowerSampler":
        if self._thread is None:
            self.sample()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self) -> bool:
        """Take one reading and integrate it. False when the read failed (counted in ``skipped``)."""
        with self._lock:
            return self._sample_locked()

    def _sample_locked(self) -> bool:
        try:
            power_w = float(self._read())
            if power_w != power_w or power_w in (float("inf"), float("-inf")):
                raise ValueError(f"power reading {power_w} is not finite")
            power_w = max(0.0, power_w)
        except (OSError, ValueError, DeviceError) as err:
            self.skipped += 1
            self.gaps += 1
            self._failed_in_row += 1
            if self._first_failure_s is None:
                self._first_failure_s = self._clock()
            if self._failed_in_row == FAILING_AFTER_READS:
                self.failing += 1
                logger.warning("camel: %s keeps failing (%d reads in a row: %s); energy is not measured until it "
                               "reads again, and requests served meanwhile are not learned from",
                               self._name, self._failed_in_row, err)
            else:
                logger.debug("camel: %s read failed (%s)", self._name, err)
            return False
        now_s = self._clock()
        if self._failed_in_row:
            self.gaps += 1  # this reading closes the gap: its energy is interpolated over it
            if self._failed_in_row >= FAILING_AFTER_READS and self._first_failure_s is not None:
                logger.warning("camel: %s reads again after %.1f s (%d reads failed); energy over the gap is "
                               "interpolated", self._name, now_s - self._first_failure_s, self._failed_in_row)
            self._failed_in_row = 0
            self._first_failure_s = None
        if self._last is not None:
            last_s, last_w = self._last
            if now_s <= last_s:
                return True
            self._energy_j += 0.5 * (power_w + last_w) * (now_s - last_s)
        self._last = (now_s, power_w)
        self.samples += 1
        return True

    def energy_j(self) -> float:
        """Joules integrated so far (monotonic); refreshed when the last sample is stale."""
        with self._lock:
            if self._last is None or self._clock() - self._last[0] > 0.5 * self.period_s:
                self._sample_locked()
            return self._energy_j

    def reading(self) -> EnergyReading:
        """:meth:`energy_j` with :attr:`gaps` and :attr:`failing`, read under one lock."""
        with self._lock:
            if self._last is None or self._clock() - self._last[0] > 0.5 * self.period_s:
                self._sample_locked()
            return EnergyReading(self._energy_j, self.gaps, self.failing)

    def power_w(self) -> float | None:
        """The latest good reading (W), or None before the first one."""
        with self._lock:
            return None if self._last is None else self._last[1]

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(1.0, 5 * self.period_s))
