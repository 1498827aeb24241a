"""Checks of command-line arguments shared by the subcommands, made before any work starts.

Each raises :class:`~camel_vllm.core.config.ConfigError` naming the option and the value, so a
command prints one line and exits 2 instead of a traceback after minutes of work (an output
path that is a folder), or waiting forever (an input that is a FIFO).
"""

from __future__ import annotations

import math
import os
from typing import Any

from camel_vllm.core.config import ConfigError
from camel_vllm.core.paths import file_problem


def input_file(option: str, path: str) -> None:
    """An existing, readable regular file (a FIFO would block the first read forever)."""
    problem = file_problem(path)
    if problem:
        raise ConfigError(option, path, problem)
    if not os.access(path, os.R_OK):
        raise ConfigError(option, path, "is not readable")


def output_file(option: str, path: str, *, make_folder: bool = False) -> None:
    """A file to write: not a folder or special file, in a folder that exists and is writable
    (``make_folder``: a folder the command makes, see :func:`output_folder`)."""
    if os.path.isdir(path):
        raise ConfigError(option, path, "is a folder; name the file to write")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ConfigError(option, path, "is not a regular file")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(option, path, "exists and is not writable")
    folder = os.path.dirname(os.path.abspath(path))
    if make_folder:
        output_folder(option, folder)
        return
    if not os.path.isdir(folder):
        raise ConfigError(option, path, f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(option, path, f"folder {folder} is not writable")


def output_folder(option: str, path: str) -> None:
    """A folder to write into (made if missing): not a file, its nearest existing parent writable."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ConfigError(option, path, "is a file, not a folder")
        if not os.access(path, os.W_OK):
            raise ConfigError(option, path, "folder is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ConfigError(option, path, f"cannot make this folder ({parent} is not a writable folder)")


def number(option: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None) -> None:
    """A finite number within the bounds (``above``: strictly greater)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(option, value, "must be a finite number")
    if minimum is not None and value < minimum:
        raise ConfigError(option, value, f"must be >= {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(option, value, f"must be <= {maximum:g}")
    if above is not None and value <= above:
        raise ConfigError(option, value, f"must be > {above:g}")
