"""jetson-stats backend: integrates the rail 'power' field (mW), never 'avg'."""

from __future__ import annotations

import pytest

from camel_vllm.core.config import ConfigError
from camel_vllm.devices.base import DevicePermissionError
from camel_vllm.devices.jtop import JtopDevice


class StubJtop:
    """Stands in for the jtop client (a dependency, not the thing under test)."""

    def __init__(self) -> None:
        self.power = {"rail": {"VDD_GPU_SOC": {"volt": 5000, "curr": 2000, "power": 10000, "avg": 99999}},
                      "tot": {"power": 20000, "avg": 88888}}
        self.closed = False

    def start(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_power_field_is_integrated_not_avg() -> None:
    now = [0.0]
    client = StubJtop()
    device = JtopDevice(client=client, clock=lambda: now[0])
    assert device.power_w() == pytest.approx(10.0)
    now[0] = 1.0
    assert device.energy_j() == pytest.approx(10.0)
    client.power["rail"]["VDD_GPU_SOC"]["power"] = 30000
    now[0] = 2.0
    assert device.energy_j() == pytest.approx(10.0 + 20.0)
    info = device.info()
    assert info.can_set_frequency is False and info.energy_method == "jtop-power-integrated"
    with pytest.raises(DevicePermissionError):
        device.set_frequency_hz(612e6)
    device.close()
    assert client.closed


def test_unknown_rail_is_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        JtopDevice(client=StubJtop(), rails="VDD_CPU_CV")
    assert err.value.key == "rails"
