"""A run record: a small JSON file that says a process has changed a device setting.

Written atomically before the first change and removed once the setting is back, so a file
still there names a run that did not put it back (SIGKILL, OOM). The next start reads it:
a record of a process that is gone, from this boot, is acted on; a live process's (same pid
and start time) is left alone. Folders: ``/run/camel-vllm`` (tmpfs: a record never outlives
a reboot), else ``$XDG_RUNTIME_DIR/camel-vllm``, else ``<tmp>/camel-vllm-<uid>``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

logger = logging.getLogger("vllm.camel")

RUN_DIR = "/run/camel-vllm"


def fallback_folders() -> list[Path]:
    """``$XDG_RUNTIME_DIR/camel-vllm`` (when set) and ``<tmp>/camel-vllm-<uid>``."""
    folders = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        folders.append(Path(runtime) / "camel-vllm")
    folders.append(Path(tempfile.gettempdir()) / f"camel-vllm-{os.getuid()}")
    return folders


def default_folders() -> list[Path]:
    """``/run/camel-vllm`` then :func:`fallback_folders`: the first writable one is used."""
    return [Path(RUN_DIR), *fallback_folders()]


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int, start_ticks: int | None) -> bool:
    """``pid`` still runs and is the process that wrote the record (same start time: not a
    reused pid). This process's own pid counts as gone: its record is from an earlier device."""
    if pid == os.getpid():
        return False
    ticks = process_start_ticks(pid)
    return ticks is not None and (start_ticks is None or ticks == start_ticks)


@dataclass(frozen=True)
class Recorded:
    """A record found on disk: what ``parse`` made of its JSON, and whose it is."""

    value: Any
    pid: int
    start_ticks: int | None

    def alive(self) -> bool:
        return process_alive(self.pid, self.start_ticks)


class RunRecord:
    """One record file, ``name`` in the first writable of ``folders``.

    JSON: ``format``, the caller's fields, ``pid``, ``start_ticks``, ``boot_id``, ``written_at``.
    ``unwritable`` is the warning (one ``%s``: why) logged once when no folder takes the file.
    """

    def __init__(self, name: str, folders: Sequence[Path], *, format: str, unwritable: str) -> None:
        self.name = name
        self.folders = list(folders)
        self.format = format
        self.unwritable = unwritable
        self.path: Path | None = None  # this process's record once written, or a dead run's once loaded
        self.shared = False  # the record found is a live process's: never overwritten nor removed here
        self._warned = False

    def load(self, parse: Callable[[dict[str, Any]], Any] = lambda data: None) -> Recorded | None:
        """The record an earlier start left (this boot), or None. ``parse`` reads the caller's
        fields; a file it cannot read (ValueError, KeyError, TypeError) is logged and removed."""
        self.shared = False
        for folder in self.folders:
            path = folder / self.name
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("format") != self.format or data.get("boot_id") != boot_id():
                    raise ValueError("another boot or not a record")
                ticks = data.get("start_ticks")
                found = Recorded(parse(data), int(data["pid"]), None if ticks is None else int(ticks))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                logger.info("camel: ignoring clock record %s (%s)", path, err)
                _unlink(path)
                continue
            if found.alive():
                self.shared = True
            else:
                self.path = path  # an earlier run's: removed once its setting is back
            return found
        return None

    def write(self, fields: dict[str, Any]) -> None:
        """Record ``fields`` as this process's (a failure is one warning; the caller goes on)."""
        if self.shared:
            return
        pid = os.getpid()
        data = {"format": self.format, **fields, "pid": pid, "start_ticks": process_start_ticks(pid),
                "boot_id": boot_id(), "written_at": time.time()}
        errors = []
        for folder in self.folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.name}.", suffix=".tmp")
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as fh:
                        json.dump(data, fh)
                    os.replace(tmp, folder / self.name)
                except BaseException:
                    _unlink(Path(tmp))
                    raise
            except OSError as err:
                errors.append(f"{folder}: {err.strerror or err}")
                continue
            self.path = folder / self.name
            return
        if not self._warned:
            self._warned = True
            logger.warning(self.unwritable, "; ".join(errors))

    def remove(self) -> None:
        if self.path is not None:
            _unlink(self.path)
            self.path = None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
