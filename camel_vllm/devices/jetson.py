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
  :class:`_ExitRestore`). SIGKILL cannot be caught: from the first write until the restore,
  the settings found at open are kept in a small file (:class:`ClockRecord`, under
  ``/run/camel-vllm``), and a start that finds the file of a process that is gone, with the
  clock not back at those settings, puts them back and says so in one line;
- INA3221 channels under ``/sys/bus/i2c/drivers/ina3221*/*/hwmon/hwmon*/``: ``in<N>_label``,
  ``in<N>_input`` (mV), ``curr<N>_input`` (mA). A rail is a channel with a real label (not
  ``NC``) and both files: the driver's channel 7 ("sum of shunt voltages") has ``in7_input``
  but no ``curr7_input``, and the shunt voltages ``in4..6_input`` have no label. Power in W
  is mV x mA / 1e6; there is no energy counter, so a :class:`PowerSampler` integrates.

All file access goes through a :class:`SysfsAccess` rooted at ``sysfs_root``, opened by
:func:`open_sysfs`. Another access class can be registered for one root with
:func:`register_sysfs_access`; nothing in camel does so: the testing package does, for its
fake trees (:mod:`camel_vllm.testing.fake_sysfs` injects EIO or EACCES on chosen files, which
no plain file under a root process can produce).
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import logging
import multiprocessing.util
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from camel_vllm.core.config import ConfigError
from camel_vllm.devices.base import DeviceError, DeviceInfo, DevicePermissionError, EnergyReading
from camel_vllm.devices.sampler import PowerSampler, sample_period_s
from camel_vllm.core.events import IterationWork

logger = logging.getLogger("vllm.camel")

#: ``of_node/name`` of the GPU devfreq device: JetPack 6 (L4T 36) and JetPack 5 (L4T 35).
GPU_OF_NODE_NAMES = ("gpu", "ga10b")
DEFAULT_RAIL = "VDD_GPU_SOC"
#: Orin NX / Nano have no VDD_GPU_SOC; their GPU shares this rail (hardware.md).
FALLBACK_RAILS = ("VDD_CPU_GPU_CV",)
PERMISSION_HINT = (
    "run as root, or install the udev rule in docs/devices.md that lets your group write "
    "the GPU devfreq min_freq/max_freq (or set read_only: true)"
)
#: Errors that mean "this process may not write the clock" (EROFS: sysfs mounted read-only,
#: as in a container): the controller then keeps to batch-only arms.
PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


class SysfsAccess:
    """Reads and writes sysfs files under ``root`` (text, stripped of NUL and whitespace)."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, path: Path) -> str:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip("\x00\n\t ")

    def write(self, path: Path, value: str) -> None:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(value)

    def write_problem(self, path: Path) -> int | None:
        """The errno a write of ``path`` would fail with for lack of permission, or None."""
        if os.access(path, os.W_OK):
            return None
        return errno.EROFS if _read_only_filesystem(path) else errno.EACCES


#: Access classes registered for particular roots (resolved), see :func:`register_sysfs_access`.
_ACCESS_BY_ROOT: dict[Path, Callable[[str | os.PathLike[str]], SysfsAccess]] = {}


def register_sysfs_access(root: str | os.PathLike[str], factory: Callable[[str | os.PathLike[str]], SysfsAccess]) -> None:
    """Open ``root`` with ``factory`` instead of :class:`SysfsAccess` (in this process and in
    processes it forks afterwards). Used by :mod:`camel_vllm.testing.fake_sysfs` for fake trees."""
    _ACCESS_BY_ROOT[Path(root).resolve()] = factory


def unregister_sysfs_access(root: str | os.PathLike[str]) -> None:
    _ACCESS_BY_ROOT.pop(Path(root).resolve(), None)


def open_sysfs(root: str | os.PathLike[str] = "/") -> SysfsAccess:
    """The access for ``root``: :class:`SysfsAccess` unless another was registered for it."""
    factory = _ACCESS_BY_ROOT.get(Path(root).resolve(), SysfsAccess) if _ACCESS_BY_ROOT else SysfsAccess
    return factory(root)


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
    access = open_sysfs(root)
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
        voltage, current = hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input"
        if not (voltage.exists() and current.exists()):
            continue  # channel 7, "sum of shunt voltages": a voltage without a current, not a rail
        rails.append(Rail(label, voltage, current, hwmon))
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
        self._exit_restore = _ExitRestore(self.restore) if install_exit_restore and not read_only else None

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
        """Write back the saved min/max (safe order) and governor; no-op if nothing was written."""
        with self._lock:
            if not self._dirty:
                return
            try:
                self._put_back(self._saved)
            except DeviceError:
                logger.error("camel: restoring the GPU clock at %s failed", self.node)
                raise
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
        except DeviceError as err:  # already logged by restore; close must not mask the exit
            logger.error("camel: %s", err)
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
        if self._read("governor") != saved_governor:
            self._write(self._governor_path, saved_governor, record=False)

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


def _read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


#: Folder of clock records relative to the sysfs root: tmpfs on a real board, so a record
#: never outlives a reboot (when the kernel resets the clock anyway).
RECORD_DIR = "/run/camel-vllm"
RECORD_FORMAT = "camel-vllm-clock-record"


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _process_start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class RecordedStart:
    """What a :class:`ClockRecord` file says: the settings found at a start, and whose start."""

    settings: tuple[str, str, str]  # min_freq (Hz), max_freq (Hz), governor
    pid: int
    start_ticks: int | None

    def alive(self) -> bool:
        """The recording process still runs (same pid and start time: not a reused pid)."""
        if self.pid == os.getpid():
            return False
        ticks = _process_start_ticks(self.pid)
        return ticks is not None and (self.start_ticks is None or ticks == self.start_ticks)


class ClockRecord:
    """The GPU clock settings found at start, on disk while camel's writes are in force.

    Written (atomically) before camel's first write to the clock, removed once the settings
    are back. One file per devfreq node, named from its real path, in the first writable
    folder of ``<sysfs_root>/run/camel-vllm`` and, for the real root only,
    ``$XDG_RUNTIME_DIR/camel-vllm`` and ``<tmp>/camel-vllm-<uid>``. A record from another
    boot is ignored. JSON: format, devfreq, min_freq, max_freq, governor, pid, start_ticks,
    boot_id, written_at.
    """

    def __init__(self, access: SysfsAccess, node: Path) -> None:
        self.node = node
        key = hashlib.sha1(os.path.realpath(node).encode("utf-8")).hexdigest()[:12]
        self.name = f"jetson-gpu-{key}.json"
        self.folders = [access.path(RECORD_DIR)]
        if access.root.resolve() == Path("/"):
            runtime = os.environ.get("XDG_RUNTIME_DIR")
            if runtime:
                self.folders.append(Path(runtime) / "camel-vllm")
            self.folders.append(Path(tempfile.gettempdir()) / f"camel-vllm-{os.getuid()}")
        self.path: Path | None = None  # where this process's record is, once written
        self.shared = False
        self._warned = False

    def load(self) -> RecordedStart | None:
        """The record an earlier start left for this node (this boot), or None."""
        for folder in self.folders:
            path = folder / self.name
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("format") != RECORD_FORMAT or data.get("boot_id") != _boot_id():
                    raise ValueError("another boot or not a record")
                start = RecordedStart((str(int(data["min_freq"])), str(int(data["max_freq"])), str(data["governor"])),
                                      int(data["pid"]), data.get("start_ticks"))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as err:
                logger.info("camel: ignoring clock record %s (%s)", path, err)
                _unlink(path)
                continue
            if start.alive():
                self.shared = True  # another live process's record: never overwritten nor removed here
            else:
                self.path = path  # an earlier run's: removed once its settings are back
            return start
        return None

    def write(self, settings: tuple[str, str, str]) -> None:
        """Record ``settings`` as this process's (a failure is one warning; the write goes on)."""
        if self.shared:
            return
        data = {
            "format": RECORD_FORMAT, "devfreq": str(self.node), "min_freq": int(settings[0]),
            "max_freq": int(settings[1]), "governor": settings[2], "pid": os.getpid(),
            "start_ticks": _process_start_ticks(os.getpid()), "boot_id": _boot_id(), "written_at": time.time(),
        }
        errors = []
        for folder in self.folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.name}.", suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh)
                os.replace(tmp, folder / self.name)
            except OSError as err:
                errors.append(f"{folder}: {err.strerror or err}")
                continue
            self.path = folder / self.name
            return
        if not self._warned:
            self._warned = True
            logger.warning("camel: cannot record the GPU clock settings found at start (%s); if this process is "
                           "killed with SIGKILL the clock stays as camel left it until restored by hand "
                           "(docs/devices.md)", "; ".join(errors))

    def remove(self) -> None:
        if self.path is not None:
            _unlink(self.path)
            self.path = None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


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
