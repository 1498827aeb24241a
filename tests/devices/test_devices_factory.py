"""make_device: auto detection order, bad names, read-only wiring."""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import pynvml
import pytest

from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.devices.base import DeviceError, NullDevice
from camel_vllm.devices.registry import make_device
from camel_vllm.testing.fake_sysfs import build_fake_orin_tree
from camel_vllm.wiring.build import resolve_frequencies_hz


@contextlib.contextmanager
def gpus(count: int, init_error: int | None = None):
    with mock.patch.object(pynvml, "nvmlInit", autospec=True) as init, \
            mock.patch.object(pynvml, "nvmlShutdown", autospec=True), \
            mock.patch.object(pynvml, "nvmlDeviceGetCount", autospec=True) as get_count:
        if init_error is not None:
            init.side_effect = pynvml.NVMLError(init_error)
        get_count.return_value = count
        yield init


def test_auto_prefers_jetson_even_with_nvml(tmp_path: Path) -> None:
    build_fake_orin_tree(tmp_path, 5)
    with gpus(1) as init:
        device = make_device(CamelConfig(device="auto", sysfs_root=str(tmp_path)))
        init.assert_not_called()
    assert device.info().kind == "jetson"
    device.close()


def test_auto_nvml_when_a_gpu_is_visible() -> None:
    from camel_vllm.devices.registry import detect_kind

    with gpus(2):
        assert detect_kind(CamelConfig(device="auto")) == "nvml"
    with gpus(0):
        assert detect_kind(CamelConfig(device="auto")) == "none"
    with gpus(1, init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED):
        assert isinstance(make_device(CamelConfig(device="auto")), NullDevice)


def test_auto_on_a_tree_without_jetson_is_none(tmp_path: Path) -> None:
    assert isinstance(make_device(CamelConfig(device="auto", sysfs_root=str(tmp_path))), NullDevice)


def test_explicit_jetson_without_node_is_device_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceError):
        make_device(CamelConfig(device="jetson", sysfs_root=str(tmp_path)))


@pytest.mark.parametrize("key,value", [("device_profile", "orin-nano"), ("model_profile", "llama-9b")])
def test_unknown_profile_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_device(CamelConfig(device="emulated", **{key: value}))
    assert err.value.key == key and value in str(err.value) and "\n" not in str(err.value)


def test_bad_device_kind_names_the_key() -> None:
    from camel_vllm.devices.registry import validate_device

    with pytest.raises(ConfigError) as err:
        validate_device(CamelConfig(device="tpu"))
    assert err.value.key == "device"


def test_profile_file_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: device\nname: x\nfrequencies_hz: [1.0e9]\nmemory_bandwidth_bps: -1\n")
    with pytest.raises(ConfigError) as err:
        make_device(CamelConfig(device="emulated", device_profile=str(bad)))
    assert err.value.key == "device_profile" and "memory_bandwidth_bps" in str(err.value)


def test_read_only_gives_batch_only_frequencies(tmp_path: Path) -> None:
    build_fake_orin_tree(tmp_path, 6)
    for kind in ("jetson", "emulated"):
        config = CamelConfig(device=kind, sysfs_root=str(tmp_path), read_only=True)
        device = make_device(config)
        assert device.info().can_set_frequency is False
        assert resolve_frequencies_hz(config, device) == [None]
        device.close()
    config = CamelConfig(device="jetson", sysfs_root=str(tmp_path))
    device = make_device(config)
    assert len(resolve_frequencies_hz(config, device)) == 7
    device.close()


def test_jtop_missing_is_a_clear_error() -> None:
    with mock.patch.dict("sys.modules", {"jtop": None}):
        with pytest.raises(DeviceError) as err:
            make_device(CamelConfig(device="jtop"))
    assert "jetson-stats" in str(err.value) and "AGPL" in str(err.value)
