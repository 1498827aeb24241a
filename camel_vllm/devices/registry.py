"""Devices by kind, from their declarations: :func:`make_device` opens the one a configuration names.

Every module of the ``camel_vllm.devices`` package that ends with a ``DECLARATION``
(:class:`~camel_vllm.devices.declaration.DeviceDeclaration`) is found here; adding a device is one
new module. ``auto`` picks a Jetson first (a GPU devfreq node or ``/etc/nv_tegra_release`` under
``sysfs_root``: on Jetson, NVML either is absent or answers NotSupported), then NVML when a GPU is
visible, else ``none`` (batch-only arms, no energy).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import pkgutil
from typing import Callable, Sequence

from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.devices.base import Device
from camel_vllm.devices.declaration import DeviceDeclaration, OpenInputs

logger = logging.getLogger("vllm.camel")

__all__ = ["detect_kind", "device_kinds", "make_device", "validate_device"]


@functools.lru_cache(maxsize=1)
def declarations() -> dict[str, DeviceDeclaration]:
    """Every declared backend by kind, in listing order (found by walking the package)."""
    import camel_vllm.devices as package

    found: list[DeviceDeclaration] = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith(".registry"):
            continue
        decl = getattr(importlib.import_module(info.name), "DECLARATION", None)
        if isinstance(decl, DeviceDeclaration):
            found.append(decl)
    return {d.kind: d for d in sorted(found, key=lambda d: (d.listing, d.kind))}


def device_kinds() -> tuple[str, ...]:
    """``auto`` and every declared kind, in listing order (the values of ``device:``)."""
    return ("auto", *declarations())


def validate_device(config: CamelConfig) -> None:
    """``config.device`` is ``auto`` or a declared kind; a ConfigError naming it otherwise."""
    if config.device not in device_kinds():
        raise ConfigError("device", config.device, f"must be one of {', '.join(device_kinds())}")


def detect_kind(config: CamelConfig) -> str:
    """What ``device: auto`` resolves to: ``jetson``, ``nvml`` or ``none``."""
    from camel_vllm.devices.jetson.sysfs import is_jetson

    if is_jetson(config.sysfs_root):
        return "jetson"
    if os.path.realpath(config.sysfs_root or "/") != "/":
        return "none"  # a fake tree without a Jetson: never probe the real GPUs for it
    try:
        import pynvml
    except ImportError:
        return "none"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return "none"
    try:
        return "nvml" if pynvml.nvmlDeviceGetCount() > 0 else "none"
    except pynvml.NVMLError:
        return "none"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def make_device(
    config: CamelConfig,
    *,
    clock: Callable[[], float] | None = None,
    gpu_indices: Sequence[int | str] | None = None,
) -> Device:
    """Open the device ``config.device`` names (see the module docstring for ``auto``).

    ``clock`` drives the emulator (vLLM: ``time.monotonic``; the simulator: virtual time).
    ``gpu_indices`` (NVML): the GPUs of a tensor-parallel engine; default: the entries of
    ``CUDA_VISIBLE_DEVICES``, or every GPU when it is unset.
    Bad names raise :class:`ConfigError` naming the key.
    """
    validate_device(config)
    kind = config.device
    if kind == "auto":
        kind = detect_kind(config)
        logger.info("camel: device auto -> %s", kind)
    return declarations()[kind].open(OpenInputs(config=config, clock=clock, gpu_indices=gpu_indices))
