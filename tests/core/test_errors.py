"""One error root: every camel error is a CamelError, keeps its old builtin base and its cause."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import pytest

from camel_vllm.bench.pool import SimWorkerError
from camel_vllm.bench.replay import ServerUnreachable
from camel_vllm.cli.trace_args import TraceOptionError
from camel_vllm.control.state import StateFileError
from camel_vllm.core.config import ConfigError
from camel_vllm.core.errors import CamelError
from camel_vllm.devices.base import DeviceError, DevicePermissionError
from camel_vllm.devices.emulator.profiles import load_device_profile
from camel_vllm.devices.jetson.device import JetsonDevice
from camel_vllm.devices.nvml import NvmlError, NvmlNoPermissionError
from camel_vllm.testing.fake_sysfs import build_fake_orin_tree
from camel_vllm.traces import load_trace
from camel_vllm.traces.base import TraceFormatError, parse_int
from camel_vllm.vllm_plugin.registry import UnknownSchedulerError


@pytest.mark.parametrize("cls, builtin", [
    (ConfigError, ValueError), (DeviceError, RuntimeError), (DevicePermissionError, RuntimeError),
    (NvmlError, RuntimeError), (NvmlNoPermissionError, RuntimeError), (TraceFormatError, ValueError),
    (TraceOptionError, ValueError), (UnknownSchedulerError, ValueError), (ServerUnreachable, RuntimeError),
    (SimWorkerError, RuntimeError), (StateFileError, Exception),
])
def test_every_error_has_the_one_root_and_keeps_its_builtin_base(cls: type, builtin: type) -> None:
    assert issubclass(cls, CamelError) and issubclass(cls, builtin)
    assert issubclass(NvmlNoPermissionError, DevicePermissionError)  # the controller's batch-only fallback


def test_config_error_is_one_line_and_pickles_by_its_arguments() -> None:
    err = ConfigError("epoch_iterations", 0, "must be an integer >= 1")
    again = pickle.loads(pickle.dumps(err))  # bench sim workers send it to their parent
    assert str(again) == str(err) == "camel config: epoch_iterations=0: must be an integer >= 1"
    assert (again.key, again.value, again.reason) == ("epoch_iterations", 0, "must be an integer >= 1")


def test_causes_are_kept(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError) as trace_err:
        parse_int("t.csv", 3, "ContextTokens", "12x")
    assert str(trace_err.value) == "t.csv:3: ContextTokens='12x' is not an integer"
    assert isinstance(trace_err.value.__cause__, ValueError)

    bad = tmp_path / "t.jsonl"
    bad.write_text('{"timestamp": 1, "input_length": 2, "output_length": 3}\n{not json\n')
    with pytest.raises(TraceFormatError) as json_err:
        load_trace(str(bad), "mooncake")
    assert isinstance(json_err.value.__cause__, ValueError)

    profile = tmp_path / "board.yaml"
    profile.write_text("frequencies_hz: [1, 2\n")
    with pytest.raises(ConfigError) as yaml_err:
        load_device_profile(str(profile))
    assert "\n" not in str(yaml_err.value) and yaml_err.value.__cause__ is not None

    tree = build_fake_orin_tree(tmp_path / "board", 6)
    device = JetsonDevice(str(tree.root), start_sampler=False, install_exit_restore=False)
    tree.fail(tree.min_freq_path, read="EIO")
    with pytest.raises(DeviceError) as device_err:
        device.set_frequency_hz(612e6)
    assert isinstance(device_err.value.__cause__, OSError) and device_err.value.__cause__.errno == errno.EIO
    tree.clear_faults()
    device.close()
