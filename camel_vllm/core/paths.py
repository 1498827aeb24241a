"""What is wrong with a path given as a file to read or write, in the words every error uses."""

from __future__ import annotations

import os
import stat


def file_problem(path: str, *, must_exist: bool = True) -> str | None:
    """Why ``path`` cannot be used as a regular file, or None: missing (when ``must_exist``), a
    folder, or a FIFO, socket or device (whose first read or write could block forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file" if must_exist else None
    except OSError:
        return None  # unreadable metadata: the open that follows says what is wrong
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None
