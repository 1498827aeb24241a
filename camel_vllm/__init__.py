"""camel-vllm: energy-aware (GPU frequency, batch cap) control for vLLM.

``camel_vllm.CamelScheduler`` is what ``--scheduler-cls camel_vllm.CamelScheduler`` and
``--scheduler camel`` load. It is imported lazily so that importing ``camel_vllm`` (the
simulator, the CLI, the device probe) never imports vLLM or torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["CamelScheduler", "__version__", "register"]


def register() -> None:
    """The ``vllm.general_plugins`` entry point (runs once in every vLLM process)."""
    from camel_vllm.vllm_plugin.plugin import register as _register

    _register()


def __getattr__(name: str) -> Any:
    if name == "CamelScheduler":
        from camel_vllm.vllm_plugin.scheduler import CamelScheduler

        return CamelScheduler
    raise AttributeError(f"module 'camel_vllm' has no attribute {name!r}")
