"""A folder built once from a pinned download, stamped with its sha256, shared by processes.

The vLLM conformance suite and vLLM 0.33.0's source are both fetched this way: built in a staging
folder beside the cache under a lock (``fcntl``), stamped, then moved into place, so parallel test
workers never see half a folder and a new pin (another sha256) builds afresh.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cached_folder(folder: Path, sha256: str, build: Callable[[Path, Path], None]) -> Path:
    """``folder``, built by ``build(dest, scratch)`` unless a complete one stamped ``sha256`` is
    there. ``build`` writes the folder's content under ``dest`` (not yet made) and may use
    ``scratch`` (an empty folder, removed afterwards) for downloads; what it raises propagates and
    leaves nothing behind."""
    stamp = folder / "SHA256"

    def complete() -> bool:
        return stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == sha256

    if complete():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if complete():
            return folder
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
        try:
            scratch, dest = staging / "scratch", staging / "folder"
            scratch.mkdir()
            build(dest, scratch)
            (dest / "SHA256").write_text(sha256 + "\n", encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(dest, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
