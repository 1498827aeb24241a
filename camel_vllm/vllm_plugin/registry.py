"""Names accepted by ``--scheduler NAME`` and the scheduler class each one loads.

vLLM's own ``--scheduler-cls`` takes a dotted class path; ``--scheduler`` takes a short name
(the clean form is proposed upstream in ``patches/``). A value that contains a dot is passed
through as a class path, so ``--scheduler pkg.mod.MyScheduler`` also works.
"""

from __future__ import annotations

from typing import Mapping

from camel_vllm.core.errors import CamelError

#: Short name -> dotted class path (``None``: vLLM's own scheduler, sync or async).
SCHEDULERS: Mapping[str, str | None] = {
    "default": None,
    "camel": "camel_vllm.CamelScheduler",
}


class UnknownSchedulerError(CamelError, ValueError):
    """``--scheduler`` named something that is neither a registered name nor a class path."""


def resolve_scheduler(name: str) -> str | None:
    """``"camel" -> "camel_vllm.CamelScheduler"``, ``"default" -> None``, dotted paths as is."""
    if name in SCHEDULERS:
        return SCHEDULERS[name]
    if "." in name:
        return name
    known = ", ".join(sorted(SCHEDULERS))
    raise UnknownSchedulerError(f"--scheduler={name}: unknown scheduler (known: {known}, or a dotted class path)")


def is_camel(scheduler_cls: object) -> bool:
    """Whether a ``scheduler_cls`` value (path or class) names camel-vllm's scheduler."""
    if scheduler_cls is None:
        return False
    if isinstance(scheduler_cls, str):
        return scheduler_cls.startswith("camel_vllm.")
    return getattr(scheduler_cls, "__module__", "").startswith("camel_vllm.")
