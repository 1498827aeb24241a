"""Checks of command-line arguments shared by the subcommands, made before any work starts.

Each raises :class:`~camel_vllm.core.config.ConfigError` naming the option and the value, so a
command prints one line and exits 2 instead of a traceback after minutes of work (an output
path that is a folder), or waiting forever (an input that is a FIFO).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

from camel_vllm.core.config import ConfigError
from camel_vllm.core.paths import file_problem

#: Said in the --help of every option that names a file to write (``bench``, ``trace to-vllm``).
OUTPUT_HELP = "missing folders are made; refused before any work if it cannot be written or is an input file"


def input_file(option: str, path: str) -> None:
    """An existing, readable regular file (a FIFO would block the first read forever)."""
    problem = file_problem(path)
    if problem:
        raise ConfigError(option, path, problem)
    if not os.access(path, os.R_OK):
        raise ConfigError(option, path, "is not readable")


def output_file(option: str, path: str, *, make_folder: bool = False) -> None:
    """A file to write: not a folder or special file, in a folder that exists and is writable
    (``make_folder``: a folder the command makes, see :func:`output_folder` and
    :func:`make_parent`), and that opens for writing."""
    if os.path.isdir(path):
        raise ConfigError(option, path, "is a folder; name the file to write")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ConfigError(option, path, "is not a regular file")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(option, path, "exists and is not writable")
    folder = os.path.dirname(os.path.abspath(path))
    if make_folder:
        try:
            output_folder(option, folder)
        except ConfigError as err:
            raise ConfigError(option, path, f"folder {folder}: {err.reason}") from err
    elif not os.path.isdir(folder):
        raise ConfigError(option, path, f"folder {folder} does not exist")
    elif not os.access(folder, os.W_OK):
        raise ConfigError(option, path, f"folder {folder} is not writable")
    if os.path.isdir(folder):
        try_open(option, path)


def try_open(option: str, path: str, *, value: str | None = None) -> None:
    """Open ``path`` for appending and close it (removed again if this made it), so a file that
    cannot be written (a read-only mount, ``/proc``; permission bits do not stop root) is refused
    before the work, not after it. ``value``: what the error names (default ``path``)."""
    existed = os.path.exists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as err:
        where = "" if value is None or value == path else f"{path}: "
        raise ConfigError(option, path if value is None else value,
                          f"{where}cannot write ({err.strerror or err})") from err
    if not existed:
        try:
            os.remove(path)
        except OSError:
            pass


def make_parent(path: str) -> None:
    """Make the folder ``path`` is written into (checked beforehand by :func:`output_file`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return os.path.realpath(a) == os.path.realpath(b)


def distinct_files(inputs: Sequence[tuple[str, str | None]], outputs: Sequence[tuple[str, str | None]]) -> None:
    """No output is an input file (it would be overwritten) or another output (one would overwrite
    the other); pairs are ``(option, path)``, ``None`` paths skipped. Same file: ``samefile``
    where both exist (links included), else the same resolved path."""
    seen: list[tuple[str, str]] = [(o, p) for o, p in inputs if p]
    for option, path in outputs:
        if not path:
            continue
        for other_option, other_path in seen:
            if _same_file(path, other_path):
                raise ConfigError(option, path, f"is the same file as {other_option} {other_path}; "
                                                "writing it would overwrite that")
        seen.append((option, path))


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
