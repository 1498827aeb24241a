"""Putting the Jetson GPU clock back: at exit and on SIGTERM (:class:`ExitRestore`), and after
a SIGKILL, from the settings a start recorded on disk (:class:`ClockRecord`).

SIGKILL cannot be caught: from camel's first write until the restore, the settings found at
open are kept in a small file under ``/run/camel-vllm`` (:mod:`camel_vllm.devices.run_record`),
and a start that finds the file of a process that is gone, with the clock not back at those
settings, puts them back and says so.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import multiprocessing.util
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from camel_vllm.devices.jetson.sysfs import SysfsAccess
from camel_vllm.devices.run_record import RUN_DIR, RunRecord, fallback_folders, process_alive

logger = logging.getLogger("vllm.camel")

#: Folder of clock records relative to the sysfs root: tmpfs on a real board, so a record
#: never outlives a reboot (when the kernel resets the clock anyway).
RECORD_DIR = RUN_DIR
RECORD_FORMAT = "camel-vllm-clock-record"


@dataclass(frozen=True)
class RecordedStart:
    """What a :class:`ClockRecord` file says: the settings found at a start, and whose start."""

    settings: tuple[str, str, str]  # min_freq (Hz), max_freq (Hz), governor
    pid: int
    start_ticks: int | None

    def alive(self) -> bool:
        """The recording process still runs (same pid and start time: not a reused pid)."""
        return process_alive(self.pid, self.start_ticks)


def _settings(data: dict) -> tuple[str, str, str]:
    return str(int(data["min_freq"])), str(int(data["max_freq"])), str(data["governor"])


class ClockRecord:
    """The GPU clock settings found at start, on disk while camel's writes are in force.

    Written (atomically) before camel's first write to the clock, removed once the settings
    are back. One file per devfreq node, named from its real path, in the first writable
    folder of ``<sysfs_root>/run/camel-vllm`` and, for the real root only,
    ``$XDG_RUNTIME_DIR/camel-vllm`` and ``<tmp>/camel-vllm-<uid>``. A record from another
    boot is ignored. JSON: format, devfreq, min_freq, max_freq, governor, pid, start_ticks,
    boot_id, written_at (a :class:`~camel_vllm.devices.run_record.RunRecord`).
    """

    def __init__(self, access: SysfsAccess, node: Path) -> None:
        self.node = node
        key = hashlib.sha1(os.path.realpath(node).encode("utf-8")).hexdigest()[:12]
        folders = [access.path(RECORD_DIR)]
        if access.root.resolve() == Path("/"):
            folders += fallback_folders()
        self._record = RunRecord(
            f"jetson-gpu-{key}.json", folders, format=RECORD_FORMAT,
            unwritable="camel: cannot record the GPU clock settings found at start (%s); if this process is "
                       "killed with SIGKILL the clock stays as camel left it until restored by hand "
                       "(docs/devices.md)",
        )
        self.name = self._record.name
        self.folders = self._record.folders

    @property
    def path(self) -> Path | None:
        """Where this process's record is once written (or a dead run's once loaded)."""
        return self._record.path

    @property
    def shared(self) -> bool:
        return self._record.shared

    def load(self) -> RecordedStart | None:
        """The record an earlier start left for this node (this boot), or None."""
        found = self._record.load(_settings)
        return None if found is None else RecordedStart(found.value, found.pid, found.start_ticks)

    def write(self, settings: tuple[str, str, str]) -> None:
        """Record ``settings`` as this process's (a failure is one warning; the write goes on)."""
        self._record.write({"devfreq": str(self.node), "min_freq": int(settings[0]),
                            "max_freq": int(settings[1]), "governor": settings[2]})

    def remove(self) -> None:
        self._record.remove()


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
