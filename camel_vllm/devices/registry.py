"""Which device a configuration names: :func:`make_device` opens it.

``auto`` picks a Jetson first (a GPU devfreq node or ``/etc/nv_tegra_release`` under
``sysfs_root``: on Jetson, NVML either is absent or answers NotSupported), then NVML when a
GPU is visible, else :class:`NullDevice` (batch-only arms, no energy).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Sequence

from camel_vllm.core.config import ConfigError, CamelConfig
from camel_vllm.devices.base import Device, NullDevice

logger = logging.getLogger("vllm.camel")

__all__ = ["detect_kind", "make_device"]


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
    kind = config.device
    if kind == "auto":
        kind = detect_kind(config)
        logger.info("camel: device auto -> %s", kind)
    if kind == "none":
        return NullDevice()
    if kind == "emulated":
        from camel_vllm.devices.emulator.device import EmulatedDevice
        from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile

        return EmulatedDevice(
            load_device_profile(config.device_profile),
            load_model_profile(config.model_profile),
            clock=clock or time.monotonic,
            seed=config.seed,
            time_mode=config.emulation_time,
            read_only=config.read_only,
        )
    if kind == "jetson":
        from camel_vllm.devices.jetson.device import JetsonDevice

        return JetsonDevice(
            config.sysfs_root, rails=config.rails, sample_hz=config.sample_hz, read_only=config.read_only,
        )
    if kind == "nvml":
        from camel_vllm.devices.jetson.sysfs import is_jetson
        from camel_vllm.devices.nvml import NvmlDevice, parse_visible_devices

        if is_jetson(config.sysfs_root):
            raise ConfigError("device", "nvml", "this is a Jetson (NVML answers NotSupported there): use device: jetson")
        gpus = list(gpu_indices) if gpu_indices is not None else parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
        return NvmlDevice(gpus, read_only=config.read_only, sample_hz=config.sample_hz)
    if kind == "jtop":
        from camel_vllm.devices.jtop import JtopDevice

        return JtopDevice(rails=config.rails, sample_hz=config.sample_hz, sysfs_root=config.sysfs_root)
    raise ConfigError("device", kind, "must be one of auto, jetson, nvml, jtop, emulated, none")
