"""vLLM 0.33.0's Python source, fetched from the package registry and unpacked once.

vLLM 0.33.0 has no CPU build to install here; the tests read its source instead
(``tests/vllm_plugin/test_vllm_surface.py``: the committed summary is what the source says;
``tests/vllm_plugin/test_patches.py``: the 0.33.0 patch applies). The sdist is downloaded from
PyPI's file host (the URL and sha256 PyPI lists for ``vllm-0.33.0.tar.gz``), checked, and only
the ``vllm/`` package's Python files are unpacked into a cache folder (inside the active virtual
environment, as the conformance suite's; ``CAMEL_VLLM_SOURCE_DIR`` overrides it).
``CAMEL_VLLM_033_SRC`` still names an unpacked ``vllm/`` folder to use instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from camel_vllm.core.errors import CamelError
from camel_vllm.testing.fetch_cache import cached_folder

VERSION = "0.33.0"
#: PyPI's file for the sdist and its sha256 (https://pypi.org/project/vllm/0.33.0/#files; 47,101,396 bytes).
SDIST_URL = ("https://files.pythonhosted.org/packages/f7/25/aa5684e9c59d6fc75f78926b7f15e8d9adc7de2d9e6e7575b80776ad8169/"
             "vllm-0.33.0.tar.gz")
SDIST_SHA256 = "f4c33c2503d52bb411146afa9618a4f48bed68912f617e6803ac8d76e4c74112"
#: Environment variables: an unpacked ``vllm/`` folder to use as is; the cache folder.
SOURCE_ENV = "CAMEL_VLLM_033_SRC"
CACHE_DIR_ENV = "CAMEL_VLLM_SOURCE_DIR"
#: Seconds allowed for the download (47 MB).
FETCH_TIMEOUT_S = 300.0


class SourceFetchError(CamelError, RuntimeError):
    """The source could not be fetched or checked; ``str(err)`` is one line saying why."""


def default_cache_dir() -> Path:
    """``$CAMEL_VLLM_SOURCE_DIR``, else inside the active virtual environment, else ``~/.cache``."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override)
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "camel-vllm-source"
    return Path.home() / ".cache" / "camel-vllm-source"


def vllm_033_source(cache_dir: Path | None = None, *, timeout_s: float = FETCH_TIMEOUT_S) -> Path:
    """The ``vllm/`` folder of vLLM 0.33.0's source: ``$CAMEL_VLLM_033_SRC``, else fetched and
    unpacked on first use (serialised by a lock; atomic; named by the sha256, so a new pin refetches)."""
    given = os.environ.get(SOURCE_ENV)
    if given:
        return Path(given)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def build(dest: Path, scratch: Path) -> None:
        sdist = scratch / f"vllm-{VERSION}.tar.gz"
        _download(sdist, timeout_s=timeout_s)
        _unpack_python(sdist, dest)

    return cached_folder(cache_dir / f"vllm-{VERSION}-{SDIST_SHA256[:16]}", SDIST_SHA256, build) / "vllm"


def _download(dest: Path, *, timeout_s: float) -> None:
    what = f"vllm-{VERSION}.tar.gz from {SDIST_URL.split('/packages/')[0]}"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(SDIST_URL, timeout=timeout_s) as response, open(dest, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise SourceFetchError(f"vllm source: cannot fetch {what} (offline?): {reason}") from None
    if digest.hexdigest() != SDIST_SHA256:
        raise SourceFetchError(f"vllm source: {dest.name} has sha256 {digest.hexdigest()}, pinned {SDIST_SHA256}")


def _unpack_python(sdist: Path, dest: Path) -> None:
    """The ``vllm/`` package's ``.py`` files, each a regular file inside ``dest``."""
    prefix = f"vllm-{VERSION}/"
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            name = member.name
            if not (name.startswith(prefix + "vllm/") and name.endswith(".py") and member.isfile()):
                continue
            rel = Path(name[len(prefix):])
            if rel.is_absolute() or ".." in rel.parts:
                raise SourceFetchError(f"vllm source: {name} in {sdist.name} leaves its folder")
            source = archive.extractfile(member)
            if source is None:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
    if not (dest / "vllm" / "v1" / "core" / "sched" / "scheduler.py").is_file():
        raise SourceFetchError(f"vllm source: {sdist.name} holds no vllm/v1/core/sched/scheduler.py")
