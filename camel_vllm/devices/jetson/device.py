"""``device: jetson``: the Jetson AGX Orin GPU clock through devfreq, power through INA3221.

A frequency F is pinned by writing F to ``min_freq`` and ``max_freq``, keeping min <= max at
every step (raising: max first; lowering: min first); the governor is left alone, as
``jetson_clocks`` does, and ``cur_freq`` is read back, so an nvpmodel or thermal cap is
reported, not fought. The settings found at open are restored on close, at exit and on
SIGTERM (:mod:`.restore`). Power is the sum of the chosen INA3221 rails (:mod:`.sysfs`), which
have no energy counter: a :class:`~camel_vllm.devices.sampler.PowerSampler` integrates it.
docs/devices.md has the board's paths, units and quirks.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from camel_vllm.core.events import IterationWork
from camel_vllm.devices.declaration import DeviceDeclaration, OpenInputs
from camel_vllm.devices.base import DeviceError, DeviceInfo, DevicePermissionError, EnergyReading
from camel_vllm.devices.jetson.restore import ClockRecord, ExitRestore
from camel_vllm.devices.jetson.sysfs import (
    DEFAULT_RAIL,
    GPU_OF_NODE_NAMES,
    PERMISSION_ERRNOS,
    SysfsAccess,
    find_gpu_devfreq,
    find_rails,
    open_sysfs,
    select_rails,
)
from camel_vllm.devices.sampler import PowerSampler, sample_period_s

logger = logging.getLogger("vllm.camel")

#: A devfreq GPU clock change takes about this long to take effect (write stall < 100 us):
#: measured on a Jetson Orin Nano, arXiv 2606.16106v1; UNVERIFIED on AGX Orin.
SWITCH_LATENCY_S = 0.005
PERMISSION_HINT = (
    "run as root, or install the udev rule in docs/devices.md that lets your group write "
    "the GPU devfreq min_freq/max_freq (or set read_only: true)"
)


class JetsonDevice:
    """GPU clock via devfreq, energy via integrated INA3221 power. Units: Hz, W, J."""

    def __init__(
        self,
        sysfs_root: str = "/",
        *,
        rails: str = DEFAULT_RAIL,
        sample_hz: float | None = None,
        read_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
        access: SysfsAccess | None = None,
        start_sampler: bool = True,
        install_exit_restore: bool = True,
    ) -> None:
        self.access = access or open_sysfs(sysfs_root)
        self.read_only = read_only
        self._lock = threading.RLock()  # re-entrant: the SIGTERM restore may interrupt a write
        node = find_gpu_devfreq(self.access)
        if node is None:
            raise DeviceError(
                f"jetson: no GPU devfreq node under {self.access.path('/sys/class/devfreq')} "
                f"(looked for of_node name {' or '.join(GPU_OF_NODE_NAMES)})"
            )
        self.node = node
        self._min_path, self._max_path = node / "min_freq", node / "max_freq"
        self._cur_path, self._governor_path = node / "cur_freq", node / "governor"
        self._frequencies_hz = tuple(sorted(float(v) for v in self._read("available_frequencies").split()))
        if not self._frequencies_hz:
            raise DeviceError(f"jetson: {node}/available_frequencies is empty")
        found = (self._read("min_freq"), self._read("max_freq"), self._read("governor"))
        self._dirty = False
        self._closed = False
        self._restore_error_logged = False
        self._pinned_hz: tuple[int, int] | None = None  # the (min, max) camel last wrote
        self.record = ClockRecord(self.access, node)
        self._saved = found if read_only else self._recover(found)
        logger.info("camel: jetson GPU clock found at %s: min_freq %s max_freq %s governor %s (restored on exit)",
                    node, *self._saved)
        self.rails = select_rails(find_rails(self.access), rails)
        self.sampler: PowerSampler | None = None
        if self.rails:
            period_s = sample_period_s(sample_hz, self._sensor_update_s())
            self.sampler = PowerSampler(self._read_rails_w, period_s, clock=clock, name="camel-ina3221")
            if start_sampler:
                self.sampler.start()
        else:
            logger.warning("camel: no INA3221 rails found under %s; energy is not measured", self.access.root)
        self._exit_restore = ExitRestore(self.restore) if install_exit_restore and not read_only else None

    # ------------------------------------------------------------------ protocol
    def info(self) -> DeviceInfo:
        return DeviceInfo(
            kind="jetson",
            name=f"jetson devfreq {self.node.name}",
            energy_source="measured" if self.rails else "none",
            energy_method="ina3221-integrated" if self.rails else "none",
            rails=tuple(r.label for r in self.rails),
            can_set_frequency=not self.read_only and self.clock_write_problem() is None,
            read_only=self.read_only,
            switch_latency_s=SWITCH_LATENCY_S,
            extra={
                "clock_write_problem": None if self.read_only else self.clock_write_problem(),
                "devfreq": str(self.node),
                "governor": self._saved[2],
                "saved_min_freq_hz": float(self._saved[0]),
                "saved_max_freq_hz": float(self._saved[1]),
                "sample_period_s": None if self.sampler is None else self.sampler.period_s,
                "skipped_samples": 0 if self.sampler is None else self.sampler.skipped,
            },
        )

    def available_frequencies_hz(self) -> Sequence[float]:
        return self._frequencies_hz

    def current_frequency_hz(self) -> float | None:
        try:
            return float(self._read("cur_freq"))
        except (OSError, ValueError):
            return None

    def set_frequency_hz(self, freq_hz: float) -> float:
        """Pin ``freq_hz`` (nearest step) in the safe order; returns ``cur_freq`` read back."""
        if self.read_only:
            raise DevicePermissionError("jetson: read_only is set; the GPU clock is not written")
        step = min(self._frequencies_hz, key=lambda f: abs(f - freq_hz))
        with self._lock:
            self._pin(int(step), int(step))
            try:
                return float(self._read("cur_freq"))
            except (OSError, ValueError) as err:
                raise DeviceError(f"jetson: reading {self._cur_path} back failed: {err}") from err

    def energy_j(self) -> float:
        return 0.0 if self.sampler is None else self.sampler.energy_j()

    def energy_reading(self) -> EnergyReading:
        """The integrated energy with the sampler's gap count (see :class:`EnergyReading`)."""
        return EnergyReading(0.0) if self.sampler is None else self.sampler.reading()

    def power_w(self) -> float | None:
        if self.sampler is None:
            return None
        try:
            return self._read_rails_w()
        except (OSError, ValueError):
            return self.sampler.power_w()

    def iteration_done(self, work: IterationWork, elapsed_s: float) -> float:
        return 0.0

    def restore(self) -> None:
        """Write back the saved min/max (safe order) and governor; no-op if nothing was written.

        Never raises (it runs at exit, on SIGTERM and from close): a failure is one error line
        saying what the clock is left at and that the record stays for the next start, which
        puts the settings back (:meth:`_recover`). Later tries that fail again say nothing more.
        """
        with self._lock:
            if not self._dirty:
                return
            try:
                self._put_back(self._saved)
            except DeviceError as err:
                self._restore_failed(err)
                return
            self._dirty = False
            self.record.remove()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.sampler is not None:
                self.sampler.close()
            self.restore()
        finally:
            if self._exit_restore is not None:
                self._exit_restore.remove()

    # ----------------------------------------------------------------- internals
    def _read(self, name: str) -> str:
        return self.access.read(self.node / name)

    def _write(self, path: Path, value: str, *, record: bool = True) -> None:
        if record and not self._dirty:
            self.record.write(self._saved)  # before the first write: a kill -9 can be undone
        try:
            self.access.write(path, value)
            self._dirty = True  # something was written: restore on close
        except OSError as err:
            if isinstance(err, PermissionError) or err.errno in PERMISSION_ERRNOS:
                raise DevicePermissionError(
                    f"jetson: cannot write {path} ({os.strerror(err.errno or errno.EACCES)}): {PERMISSION_HINT}"
                ) from err
            raise DeviceError(f"jetson: writing {value} to {path} failed: {err.strerror or err}") from err

    def _put_back(self, settings: tuple[str, str, str]) -> None:
        """Write ``(min_freq, max_freq, governor)`` back in the safe order (not recorded)."""
        saved_min, saved_max, saved_governor = settings
        self._pin(int(saved_min), int(saved_max), record=False)
        try:
            governor = self._read("governor")
        except OSError as err:
            raise DeviceError(f"jetson: reading {self._governor_path} failed: {err.strerror or err}") from err
        if governor != saved_governor:
            self._write(self._governor_path, saved_governor, record=False)

    def _restore_failed(self, err: DeviceError) -> None:
        """One error line (the first time): why, what the clock is left at, what happens next."""
        if self._restore_error_logged:
            logger.debug("camel: restoring the GPU clock at %s failed again: %s", self.node, err)
            return
        self._restore_error_logged = True
        try:
            left = "at min_freq {} max_freq {} governor {}".format(*(self._read(n) for n in ("min_freq", "max_freq",
                                                                                        "governor")))
        except OSError:
            left = "as camel set it" + ("" if self._pinned_hz is None else f" (min_freq {self._pinned_hz[0]} "
                                                                          f"max_freq {self._pinned_hz[1]})")
        saved = "min_freq {} max_freq {} governor {}".format(*self._saved)
        if self.record.path is not None:
            then = f"the record {self.record.path} is kept, so the next start puts back {saved}"
        elif self.record.shared:
            then = f"the process that recorded {saved} puts them back when it exits"
        else:
            then = f"no record could be written: put back {saved} by hand (docs/devices.md)"
        logger.error("camel: restoring the GPU clock at %s failed (%s); it is left %s; %s",
                     self.node, err, left, then)

    def _recover(self, found: tuple[str, str, str]) -> tuple[str, str, str]:
        """The settings to restore on exit: ``found``, or those an earlier run recorded.

        An earlier run that was killed (SIGKILL, OOM) left its record: when that process is
        gone and the clock is not at the settings it found, they are written back now (one
        warning line). A record of a live process (another engine on this board) is adopted,
        not acted on: its settings are the ones restored on exit.
        """
        earlier = self.record.load()
        if earlier is None:
            return found
        settings = earlier.settings
        if earlier.alive():
            logger.warning("camel: process %d also drives the GPU clock at %s; on exit camel restores the settings "
                           "it found (min_freq %s max_freq %s governor %s)", earlier.pid, self.node, *settings)
            return settings
        if found != settings:
            try:
                with self._lock:
                    self._put_back(settings)
            except DeviceError as err:
                logger.error("camel: the GPU clock at %s was left at min_freq %s max_freq %s governor %s by an earlier "
                             "run (pid %d) that did not restore it, and restoring failed: %s",
                             self.node, *found, earlier.pid, err)
                return settings
            logger.warning("camel: the GPU clock at %s was left at min_freq %s max_freq %s governor %s by an earlier "
                           "run (pid %d) that did not restore it; restored min_freq %s max_freq %s governor %s found "
                           "at its start", self.node, *found, earlier.pid, *settings)
            self._dirty = False  # the settings to restore are in force again
        self.record.remove()
        return settings

    def clock_write_problem(self) -> str | None:
        """Why this process cannot write the clock (one line with what to do), or None."""
        for path in (self._min_path, self._max_path):
            code = self.access.write_problem(path)
            if code is not None:
                return f"jetson: cannot write {path} ({os.strerror(code)}): {PERMISSION_HINT}"
        return None

    def _pin(self, min_hz: int, max_hz: int, *, record: bool = True) -> None:
        """Set (min, max) keeping min <= max: max first when it does not go below the current min."""
        try:
            current_min = int(self._read("min_freq"))
        except (OSError, ValueError) as err:
            raise DeviceError(f"jetson: reading {self._min_path} failed: {err}") from err
        if max_hz >= current_min:
            self._write(self._max_path, str(max_hz), record=record)
            self._write(self._min_path, str(min_hz), record=record)
        else:
            self._write(self._min_path, str(min_hz), record=record)
            self._write(self._max_path, str(max_hz), record=record)
        self._pinned_hz = (min_hz, max_hz)

    def _read_rails_w(self) -> float:
        total_w = 0.0
        for rail in self.rails:
            millivolts = float(self.access.read(rail.voltage_path))
            milliamps = float(self.access.read(rail.current_path))
            total_w += millivolts * milliamps / 1e6
        return total_w

    def _sensor_update_s(self) -> float | None:
        slowest: float | None = None
        for hwmon in {r.hwmon for r in self.rails}:
            try:
                interval_s = float(self.access.read(hwmon / "update_interval")) / 1000.0
            except (OSError, ValueError):
                continue
            slowest = interval_s if slowest is None else max(slowest, interval_s)
        return slowest


def _open(inputs: OpenInputs) -> JetsonDevice:
    config = inputs.config
    return JetsonDevice(config.sysfs_root, rails=config.rails, sample_hz=config.sample_hz, read_only=config.read_only)


DECLARATION = DeviceDeclaration("jetson", "devfreq GPU clock and INA3221 power rails (sysfs)", _open, listing=1)
