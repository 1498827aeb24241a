"""``device: jetson``: Jetson AGX Orin GPU clock through devfreq, power through INA3221 hwmon.

Facts (paths, units, quirks) are in ../shared/reference/hardware.md:

- the GPU devfreq node is the ``/sys/class/devfreq/*`` entry whose ``device/of_node/name``
  is ``gpu`` (JetPack 6) or ``ga10b`` (JetPack 5); frequencies are in Hz;
- a frequency F is pinned by writing F to ``min_freq`` and ``max_freq`` keeping min <= max
  at every step (raising: max first; lowering: min first). The governor is left alone
  (``jetson_clocks`` pins the same way); ``cur_freq`` is read back and returned, so an
  nvpmodel or thermal cap is reported, not fought;
- ``min_freq``, ``max_freq`` and ``governor`` are saved at open and restored on close, at
  interpreter exit, and on SIGTERM when no one else handles SIGTERM (see
  :class:`_ExitRestore`);
- INA3221 channels under ``/sys/bus/i2c/drivers/ina3221*/*/hwmon/hwmon*/``: ``in<N>_label``,
  ``in<N>_input`` (mV), ``curr<N>_input`` (mA); ``NC`` channels are skipped; power in W is
  mV x mA / 1e6; there is no energy counter, so a :class:`PowerSampler` integrates.

All file access goes through :class:`SysfsAccess` rooted at ``sysfs_root``. For a root other
than ``/`` (tests) it honours a fault file written by :mod:`camel_vllm.devices.testing`
(EIO or EACCES on a chosen file), because root can write a read-only file and no plain file
can return EIO. A real ``/`` root never reads that file.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import multiprocessing.util
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from camel_vllm.config import ConfigError
from camel_vllm.devices.base import DeviceError, DeviceInfo, DevicePermissionError
from camel_vllm.devices.sampler import PowerSampler, sample_period_s
from camel_vllm.types import IterationWork

logger = logging.getLogger("vllm.camel")

#: ``of_node/name`` of the GPU devfreq device: JetPack 6 (L4T 36) and JetPack 5 (L4T 35).
GPU_OF_NODE_NAMES = ("gpu", "ga10b")
#: Relative to the sysfs root; only read when the root is not ``/``.
FAULTS_FILE = ".camel-fake-sysfs-faults.json"
DEFAULT_RAIL = "VDD_GPU_SOC"
#: Orin NX / Nano have no VDD_GPU_SOC; their GPU shares this rail (hardware.md).
FALLBACK_RAILS = ("VDD_CPU_GPU_CV",)
PERMISSION_HINT = (
    "run as root, or install the udev rule in docs/devices.md that lets your group write "
    "the GPU devfreq min_freq/max_freq (or set read_only: true)"
)


class SysfsAccess:
    """Reads and writes sysfs files under ``root`` (text, stripped of NUL and whitespace)."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)
        self._faults = None if self.root.resolve() == Path("/") else self.root / FAULTS_FILE

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, path: Path) -> str:
        self._inject(path, "read")
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip("\x00\n\t ")

    def write(self, path: Path, value: str) -> None:
        self._inject(path, "write")
        with open(path, "w", encoding="ascii") as fh:
            fh.write(value)

    def _inject(self, path: Path, op: str) -> None:
        if self._faults is None or not self._faults.exists():
            return
        try:
            faults = json.loads(self._faults.read_text(encoding="utf-8"))
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(self.root))
        except (OSError, ValueError):
            return
        code = faults.get(rel, {}).get(op)
        if code:
            number = getattr(errno, code)
            raise OSError(number, os.strerror(number), str(path))


# --------------------------------------------------------------------------- discovery
def find_gpu_devfreq(access: SysfsAccess) -> Path | None:
    """The GPU's devfreq folder (the class entry), or None when there is none."""
    folder = access.path("/sys/class/devfreq")
    if not folder.is_dir():
        return None
    for entry in sorted(folder.iterdir()):
        try:
            name = access.read(entry / "device" / "of_node" / "name")
        except OSError:
            continue
        if name in GPU_OF_NODE_NAMES:
            return entry
    return None


def is_jetson(root: str = "/") -> bool:
    """A Jetson: ``/etc/nv_tegra_release`` exists or a GPU devfreq node does."""
    access = SysfsAccess(root)
    return access.path("/etc/nv_tegra_release").exists() or find_gpu_devfreq(access) is not None


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel: ``label``, bus voltage file (mV) and current file (mA)."""

    label: str
    voltage_path: Path
    current_path: Path
    hwmon: Path


def find_rails(access: SysfsAccess) -> list[Rail]:
    """Every connected INA3221 channel (``NC`` skipped), in address and channel order."""
    rails: list[Rail] = []
    drivers = access.path("/sys/bus/i2c/drivers")
    for label_path in sorted(drivers.glob("ina3221*/*/hwmon/hwmon*/in*_label")):
        channel = label_path.name[len("in"):-len("_label")]
        try:
            label = access.read(label_path)
        except OSError:
            continue
        if not label or label.upper() == "NC":
            continue
        hwmon = label_path.parent
        rails.append(Rail(label, hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input", hwmon))
    return rails


def select_rails(rails: Sequence[Rail], wanted: str) -> list[Rail]:
    """``VDD_GPU_SOC`` (default), ``all`` or a comma list. Unknown names: ConfigError on ``rails``."""
    by_label = {r.label: r for r in rails}
    if wanted.strip().lower() == "all":
        return list(rails)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    if names == [DEFAULT_RAIL] and DEFAULT_RAIL not in by_label:
        for fallback in FALLBACK_RAILS:
            if fallback in by_label:
                logger.warning("camel: no %s rail on this board; using %s", DEFAULT_RAIL, fallback)
                return [by_label[fallback]]
    missing = [n for n in names if n not in by_label]
    if missing or not names:
        have = ", ".join(by_label) or "none found"
        raise ConfigError("rails", wanted, f"no rail {', '.join(missing) or '(empty)'} on this board (rails: {have}; or 'all')")
    return [by_label[n] for n in names]


# ------------------------------------------------------------------------------ device
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
        self.access = access or SysfsAccess(sysfs_root)
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
        self._saved = (self._read("min_freq"), self._read("max_freq"), self._read("governor"))
        logger.info("camel: jetson GPU clock found at %s: min_freq %s max_freq %s governor %s (restored on exit)",
                    node, *self._saved)
        self._dirty = False
        self._closed = False
        self.rails = select_rails(find_rails(self.access), rails)
        self.sampler: PowerSampler | None = None
        if self.rails:
            period_s = sample_period_s(sample_hz, self._sensor_update_s())
            self.sampler = PowerSampler(self._read_rails_w, period_s, clock=clock, name="camel-ina3221")
            if start_sampler:
                self.sampler.start()
        else:
            logger.warning("camel: no INA3221 rails found under %s; energy is not measured", self.access.root)
        self._exit_restore = _ExitRestore(self.restore) if install_exit_restore and not read_only else None

    # ------------------------------------------------------------------ protocol
    def info(self) -> DeviceInfo:
        return DeviceInfo(
            kind="jetson",
            name=f"jetson devfreq {self.node.name}",
            energy_source="measured" if self.rails else "none",
            energy_method="ina3221-integrated" if self.rails else "none",
            rails=tuple(r.label for r in self.rails),
            can_set_frequency=not self.read_only and self._writable(),
            read_only=self.read_only,
            extra={
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
                raise DeviceError(f"jetson: reading {self._cur_path} back failed: {err}") from None

    def energy_j(self) -> float:
        return 0.0 if self.sampler is None else self.sampler.energy_j()

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
        """Write back the saved min/max (safe order) and governor; no-op if nothing was written."""
        with self._lock:
            if not self._dirty:
                return
            saved_min, saved_max, saved_governor = self._saved
            try:
                self._pin(int(saved_min), int(saved_max))
                if self._read("governor") != saved_governor:
                    self._write(self._governor_path, saved_governor)
            except DeviceError:
                logger.error("camel: restoring the GPU clock at %s failed", self.node)
                raise
            self._dirty = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.sampler is not None:
                self.sampler.close()
            self.restore()
        except DeviceError as err:  # already logged by restore; close must not mask the exit
            logger.error("camel: %s", err)
        finally:
            if self._exit_restore is not None:
                self._exit_restore.remove()

    # ----------------------------------------------------------------- internals
    def _read(self, name: str) -> str:
        return self.access.read(self.node / name)

    def _write(self, path: Path, value: str) -> None:
        try:
            self.access.write(path, value)
            self._dirty = True  # something was written: restore on close
        except PermissionError:
            raise DevicePermissionError(f"jetson: no permission to write {path}: {PERMISSION_HINT}") from None
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                raise DevicePermissionError(f"jetson: no permission to write {path}: {PERMISSION_HINT}") from None
            raise DeviceError(f"jetson: writing {value} to {path} failed: {err.strerror or err}") from None

    def _pin(self, min_hz: int, max_hz: int) -> None:
        """Set (min, max) keeping min <= max: max first when it does not go below the current min."""
        try:
            current_min = int(self._read("min_freq"))
        except (OSError, ValueError) as err:
            raise DeviceError(f"jetson: reading {self._min_path} failed: {err}") from None
        if max_hz >= current_min:
            self._write(self._max_path, str(max_hz))
            self._write(self._min_path, str(min_hz))
        else:
            self._write(self._min_path, str(min_hz))
            self._write(self._max_path, str(max_hz))

    def _writable(self) -> bool:
        return all(os.access(p, os.W_OK) for p in (self._min_path, self._max_path)) and not self._fault_on_write()

    def _fault_on_write(self) -> bool:
        for path in (self._min_path, self._max_path):
            try:
                self.access._inject(path, "write")
            except OSError as err:
                if err.errno in (errno.EACCES, errno.EPERM):
                    return True
        return False

    def _read_rails_w(self) -> float:
        total_w = 0.0
        for rail in self.rails:
            millivolts = float(self.access.read(rail.voltage_path))
            milliamps = float(self.access.read(rail.current_path))
            total_w += millivolts * milliamps / 1e6
        return total_w

    def _sensor_update_s(self) -> float | None:
        slowest = None
        for hwmon in {r.hwmon for r in self.rails}:
            try:
                interval_s = float(self.access.read(hwmon / "update_interval")) / 1000.0
            except (OSError, ValueError):
                continue
            slowest = interval_s if slowest is None else max(slowest, interval_s)
        return slowest


class _ExitRestore:
    """Restore the clock at interpreter exit and on SIGTERM, without fighting vLLM.

    At exit, always: ``atexit`` (a normal interpreter exit) plus a ``multiprocessing``
    finaliser, because vLLM's engine core runs in a *forked* process (default
    ``VLLM_WORKER_MULTIPROC_METHOD=fork``) that leaves through ``os._exit``, which skips
    atexit but runs multiprocessing finalisers. vLLM's engine core installs its SIGTERM
    handler *before* it builds the scheduler (vllm/v1/engine/core.py ``run_engine_core``);
    the handler raises ``SystemExit``, the ``finally`` calls ``EngineCore.shutdown`` ->
    ``scheduler.shutdown`` (where the controller's ``close`` restores first), then these
    hooks run (a no-op when already restored). A SIGTERM handler is installed only when the handler in
    force is the default one and this is the main thread: it restores, puts the default back
    and re-raises SIGTERM, so the exit status is unchanged. An existing handler (vLLM's, the
    user's) is never replaced, and on close ours is removed only if it is still in force.
    SIGKILL cannot be caught: docs/devices.md gives the manual restore.
    """

    def __init__(self, restore: Callable[[], None]) -> None:
        self._restore = restore
        atexit.register(self._at_exit)
        self._finalizer = multiprocessing.util.Finalize(None, self._at_exit, exitpriority=100)
        self._handler_installed = False
        if threading.current_thread() is threading.main_thread():
            try:
                if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                    signal.signal(signal.SIGTERM, self._on_sigterm)
                    self._handler_installed = True
            except (ValueError, OSError):  # not allowed here (embedded interpreters)
                pass

    def _at_exit(self) -> None:
        try:
            self._restore()
        except Exception as err:  # at exit there is nobody left to raise to
            logger.error("camel: restore at exit failed: %s", err)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self._at_exit()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def remove(self) -> None:
        atexit.unregister(self._at_exit)
        self._finalizer.cancel()
        if self._handler_installed and threading.current_thread() is threading.main_thread():
            try:
                if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
            self._handler_installed = False
