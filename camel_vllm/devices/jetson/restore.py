"""Putting the Jetson GPU clock back: at exit and on SIGTERM (:class:`ExitRestore`), and after
a SIGKILL, from the settings a start recorded on disk (:class:`ClockRecord`).

SIGKILL cannot be caught: from camel's first write until the restore, the settings found at
open are kept in a small file under ``/run/camel-vllm``, and a start that finds the file of a
process that is gone, with the clock not back at those settings, puts them back and says so.
"""

from __future__ import annotations

import atexit
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
from typing import Callable

from camel_vllm.devices.jetson.sysfs import SysfsAccess

logger = logging.getLogger("vllm.camel")

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


class ExitRestore:
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
