"""What a device backend declares about itself, once: its kind (the ``device:`` config value) and
how it is opened.

A backend module ends with ``DECLARATION = DeviceDeclaration(...)``;
:mod:`camel_vllm.devices.registry` finds every declaration in the package, and ``make_device``,
the config check and ``camel-vllm probe --device`` read them. Adding a device is one new module
(and its tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from camel_vllm.core.config import CamelConfig
    from camel_vllm.devices.base import Device


@dataclass(frozen=True)
class OpenInputs:
    """What a backend's opener gets: the configuration, the clock that drives an emulator (vLLM:
    ``time.monotonic``; the simulator: virtual time) and, for NVML, the GPUs of the engine."""

    config: CamelConfig
    clock: Callable[[], float] | None = None
    gpu_indices: Sequence[int | str] | None = None


@dataclass(frozen=True)
class DeviceDeclaration:
    """A backend: ``kind`` (``device: KIND``), one line for listings, its opener, its place in
    listings (``auto`` comes first, then the declared kinds)."""

    kind: str
    summary: str
    open: Callable[[OpenInputs], Device]
    listing: int = 100
