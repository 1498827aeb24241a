"""NVML backend with the whole ``pynvml`` module replaced by an autospec of the real one.

:func:`autospec_pynvml` is ``mock.create_autospec`` of the installed nvidia-ml-py module, put
in ``sys.modules`` (the backend imports ``pynvml`` at each use): every NVML function the
backend calls must exist there and be called with its real signature, or the test fails
with a ``TypeError``. The module's constants and exception classes stay the real ones, so
error codes and ``except pynvml.NVMLError`` behave as in production. A :class:`FakeGpus`
holds the state behind the functions' side effects. Locked-clocks records go to a folder
under the test's ``tmp_path`` (the fixture replaces the default folders).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator
from unittest import mock

import pynvml
import pytest

from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.core.errors import CamelError
from camel_vllm.devices.base import DeviceError, DevicePermissionError
from camel_vllm.devices import nvml as nvml_module
from camel_vllm.devices.nvml import (
    RECORD_FORMAT,
    NvmlDevice,
    NvmlDriverError,
    NvmlError,
    NvmlGpuLostError,
    NvmlNoPermissionError,
    NvmlNotFoundError,
    parse_visible_devices,
)
from camel_vllm.devices.registry import make_device
from camel_vllm.devices.run_record import boot_id, process_start_ticks
from camel_vllm.testing.fake_sysfs import build_fake_orin_tree

SETTERS = ("nvmlDeviceSetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks")
REPO = Path(__file__).resolve().parents[2]


def autospec_pynvml() -> mock.NonCallableMagicMock:
    """``create_autospec(pynvml)`` with the real constants and exception classes kept."""
    fake = mock.create_autospec(pynvml, spec_set=True)
    for name in dir(pynvml):
        value = getattr(pynvml, name)
        if (isinstance(value, (int, float, str, bytes))
                or (isinstance(value, type) and issubclass(value, BaseException))):
            setattr(fake, name, value)
    return fake


class FakeGpus:
    """State behind the autospecced functions: handles are ints 0..n-1."""

    def __init__(self, n: int = 2) -> None:
        self.n = n
        self.locked: dict[int, int | None] = {i: None for i in range(n)}
        self.energy_mj = {i: 1_000_000.0 for i in range(n)}
        self.power_mw = {i: 150_000 for i in range(n)}
        self.cap_mhz: int | None = None
        self.idle_mhz = 210


def fake_pynvml(gpus: FakeGpus) -> mock.NonCallableMagicMock:
    """:func:`autospec_pynvml` with side effects that read and change ``gpus``."""
    m = autospec_pynvml()
    m.nvmlDeviceGetCount.return_value = gpus.n
    m.nvmlDeviceGetHandleByIndex.side_effect = lambda i: int(i)
    m.nvmlDeviceGetHandleByUUID.side_effect = lambda uuid: 1
    m.nvmlDeviceGetName.side_effect = lambda h: "NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetUUID.side_effect = lambda h: f"GPU-{h:08d}-5f2c-4c1e-9a4b-000000000000"
    m.nvmlDeviceGetSupportedMemoryClocks.side_effect = lambda h: [2619, 1593]
    m.nvmlDeviceGetSupportedGraphicsClocks.side_effect = (
        lambda h, mem: [1980, 1500, 1005, 705] if h == 0 else [1980, 1500, 1005, 345]
    )

    def lock(h, lo, hi):
        gpus.locked[h] = hi

    def clock(h, kind):
        want = gpus.locked[h]
        if want is None:
            return gpus.idle_mhz
        return min(want, gpus.cap_mhz) if gpus.cap_mhz else want

    m.nvmlDeviceSetGpuLockedClocks.side_effect = lock
    m.nvmlDeviceResetGpuLockedClocks.side_effect = lambda h: gpus.locked.__setitem__(h, None)
    m.nvmlDeviceGetClockInfo.side_effect = clock
    m.nvmlDeviceGetTotalEnergyConsumption.side_effect = lambda h: gpus.energy_mj[h]
    m.nvmlDeviceGetPowerUsage.side_effect = lambda h: gpus.power_mw[h]
    m.nvmlDeviceGetCurrentClocksEventReasons.return_value = 0
    return m


@pytest.fixture()
def records(tmp_path: Path) -> Path:
    return tmp_path / "camel-vllm-records"


@pytest.fixture()
def nvml(records: Path, monkeypatch) -> Iterator[tuple[mock.NonCallableMagicMock, FakeGpus]]:
    gpus = FakeGpus()
    m = fake_pynvml(gpus)
    monkeypatch.setattr(nvml_module, "default_folders", lambda: [records])
    with mock.patch.dict(sys.modules, {"pynvml": m}):
        yield m, gpus


def test_the_fake_module_checks_signatures_and_keeps_real_errors(nvml) -> None:
    m, gpus = nvml
    import pynvml as patched

    assert patched is m
    with pytest.raises(TypeError):
        patched.nvmlDeviceGetClockInfo(0)  # the real function takes (handle, type)
    with pytest.raises(AttributeError):
        patched.nvmlDeviceSetClocksTheWrongName  # noqa: B018  (not in nvidia-ml-py)
    assert patched.NVMLError is pynvml.NVMLError and patched.NVML_CLOCK_SM == pynvml.NVML_CLOCK_SM


def test_clocks_are_common_to_all_gpus_and_locked_together(nvml) -> None:
    m, gpus = nvml
    device = NvmlDevice([0, 1])
    assert list(device.available_frequencies_hz()) == [1005e6, 1500e6, 1980e6]
    m.nvmlDeviceGetSupportedGraphicsClocks.assert_any_call(0, 2619)  # highest memory clock
    assert device.set_frequency_hz(1500e6) == 1500e6
    m.nvmlDeviceSetGpuLockedClocks.assert_has_calls([mock.call(0, 1500, 1500), mock.call(1, 1500, 1500)])
    assert gpus.locked == {0: 1500, 1: 1500}
    device.close()
    device.close()
    assert gpus.locked == {0: None, 1: None}
    assert m.nvmlDeviceResetGpuLockedClocks.call_count == 2
    m.nvmlDeviceGetClockInfo.assert_any_call(0, pynvml.NVML_CLOCK_SM)


def test_read_back_mismatch_is_returned(nvml) -> None:
    m, gpus = nvml
    gpus.cap_mhz = 1005  # power or thermal cap
    device = NvmlDevice([0, 1])
    assert device.set_frequency_hz(1980e6) == 1005e6
    device.close()


def test_no_permission_is_one_clear_line(nvml) -> None:
    m, gpus = nvml
    m.nvmlDeviceSetGpuLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    device = NvmlDevice([0])
    with pytest.raises(DevicePermissionError) as err:
        device.set_frequency_hz(1500e6)
    assert "\n" not in str(err.value) and "root" in str(err.value) and "read_only" in str(err.value)
    device.close()


def test_nvml_errors_map_to_classes_and_keep_the_cause(nvml, monkeypatch) -> None:
    m, gpus = nvml
    m.nvmlDeviceSetGpuLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    device = NvmlDevice([0])
    with pytest.raises(NvmlNoPermissionError) as err:
        device.set_frequency_hz(1500e6)
    assert isinstance(err.value, DevicePermissionError) and isinstance(err.value, CamelError)
    assert isinstance(err.value.__cause__, pynvml.NVMLError)
    assert err.value.code == err.value.__cause__.value == pynvml.NVML_ERROR_NO_PERMISSION
    m.nvmlDeviceSetGpuLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
    with pytest.raises(NvmlGpuLostError) as err:
        device.set_frequency_hz(1500e6)
    assert not isinstance(err.value, DevicePermissionError)
    assert str(err.value) == "nvml: locking clocks at 1500 MHz failed: GPU is lost"
    assert err.value.__cause__.value == pynvml.NVML_ERROR_GPU_IS_LOST
    m.nvmlDeviceSetGpuLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
    with pytest.raises(NvmlError) as err:
        device.set_frequency_hz(1500e6)
    assert type(err.value) is NvmlError and err.value.code == pynvml.NVML_ERROR_UNKNOWN
    device.close()
    m.nvmlDeviceGetHandleByIndex.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    with pytest.raises(NvmlNotFoundError, match="^nvml: GPU 7: ") as err:
        NvmlDevice([7])
    assert isinstance(err.value.__cause__, pynvml.NVMLError)
    m.nvmlInit.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    with pytest.raises(NvmlDriverError) as err:
        make_device(CamelConfig(device="nvml"), gpu_indices=[0])
    assert str(err.value) == "nvml: cannot initialise NVML: Driver Not Loaded"
    assert err.value.__cause__.value == pynvml.NVML_ERROR_DRIVER_NOT_LOADED


def test_a_failed_power_read_is_a_gap_not_a_crash(nvml) -> None:
    m, gpus = nvml
    m.nvmlDeviceGetTotalEnergyConsumption.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    now = [0.0]
    device = NvmlDevice([0], clock=lambda: now[0], sample_hz=1000.0)
    try:
        sampler = device.sampler
        assert sampler is not None
        m.nvmlDeviceGetPowerUsage.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        assert device.power_w() is None
        now[0] = 1.0
        assert sampler.sample() is False and sampler.skipped >= 1
        m.nvmlDeviceGetPowerUsage.side_effect = lambda h: gpus.power_mw[h]
        now[0] = 2.0
        assert device.energy_reading().gaps >= 2  # the failed read and the one that closed the gap
        assert device.energy_j() == pytest.approx(300.0)  # 150 W over 2 s, the gap interpolated
    finally:
        device.close()


def test_partial_lock_failure_resets_the_gpus_already_locked(nvml) -> None:
    m, gpus = nvml

    def lock(h, lo, hi):
        if h == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
        gpus.locked[h] = hi

    m.nvmlDeviceSetGpuLockedClocks.side_effect = lock
    device = NvmlDevice([0, 1])
    with pytest.raises(DeviceError):
        device.set_frequency_hz(1500e6)
    assert gpus.locked == {0: None, 1: None}
    device.close()


def test_energy_counter_is_monotonic_across_reset(nvml) -> None:
    m, gpus = nvml
    device = NvmlDevice([0])
    assert device.info().energy_method == "nvml-total-energy"
    assert device.energy_j() == 0.0
    gpus.energy_mj[0] += 2000.0
    assert device.energy_j() == pytest.approx(2.0)
    gpus.energy_mj[0] = 500.0  # driver reload: counter restarted from 0
    assert device.energy_j() == pytest.approx(2.5)
    gpus.energy_mj[0] = 1500.0
    assert device.energy_j() == pytest.approx(3.5)
    assert device.counter_resets == 1
    device.close()


def test_energy_sums_gpus(nvml) -> None:
    m, gpus = nvml
    device = NvmlDevice([0, 1])
    gpus.energy_mj[0] += 1000.0
    gpus.energy_mj[1] += 3000.0
    assert device.energy_j() == pytest.approx(4.0)
    assert device.power_w() == pytest.approx(300.0)
    device.close()


def test_not_supported_energy_falls_back_to_power_integration(nvml) -> None:
    m, gpus = nvml
    m.nvmlDeviceGetTotalEnergyConsumption.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    now = [0.0]
    device = NvmlDevice([0], clock=lambda: now[0], sample_hz=1000.0)
    try:
        assert device.info().energy_method == "nvml-power-integrated"
        now[0] = 2.0
        assert device.energy_j() == pytest.approx(300.0)  # 150 W for 2 s
        gpus.power_mw[0] = 50_000
        now[0] = 3.0
        assert device.energy_j() == pytest.approx(300.0 + 100.0)  # trapezoid 150 -> 50 W over 1 s
    finally:
        device.close()


def test_read_only_calls_no_setter(nvml) -> None:
    m, gpus = nvml
    device = make_device(CamelConfig(device="nvml", read_only=True), gpu_indices=[0, 1])
    assert device.info().can_set_frequency is False
    assert len(device.available_frequencies_hz()) == 3
    with pytest.raises(DevicePermissionError):
        device.set_frequency_hz(1500e6)
    device.energy_j()
    device.restore()
    device.close()
    for name in SETTERS:
        getattr(m, name).assert_not_called()


def test_cuda_visible_devices_selects_gpus(nvml, monkeypatch) -> None:
    m, gpus = nvml
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,GPU-5f2c")
    device = make_device(CamelConfig(device="nvml"))
    m.nvmlDeviceGetHandleByIndex.assert_called_once_with(1)
    m.nvmlDeviceGetHandleByUUID.assert_called_once_with("GPU-5f2c")
    assert device.info().extra["gpus"] == ["1", "GPU-5f2c"]
    device.close()
    assert parse_visible_devices(None) is None and parse_visible_devices("") == []


def test_empty_visible_devices_is_device_error(nvml, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError, match="no GPU visible"):
        make_device(CamelConfig(device="nvml"))


def test_idle_gpu_read_back_counts_as_locked(nvml) -> None:
    m, gpus = nvml
    m.nvmlDeviceGetClockInfo.side_effect = lambda h, kind: gpus.idle_mhz
    m.nvmlDeviceGetCurrentClocksEventReasons.return_value = pynvml.nvmlClocksEventReasonGpuIdle
    device = NvmlDevice([0])
    assert device.set_frequency_hz(1500e6) == 1500e6
    device.close()


def test_never_chosen_on_a_jetson(nvml, tmp_path: Path) -> None:
    m, gpus = nvml
    build_fake_orin_tree(tmp_path, 6)
    device = make_device(CamelConfig(device="auto", sysfs_root=str(tmp_path)))
    assert device.info().kind == "jetson"
    device.close()
    with pytest.raises(ConfigError) as err:
        make_device(CamelConfig(device="nvml", sysfs_root=str(tmp_path)))
    assert err.value.key == "device"
    m.nvmlInit.assert_not_called()


# ------------------------------------------------------------------ kill -9 records
def _record_files(records: Path) -> list[Path]:
    return sorted(records.glob("nvml-gpu-*.json")) if records.exists() else []


def _write_record(records: Path, pid: int, *, boot: str | None = None) -> Path:
    """The record a process ``pid`` leaves for GPUs 0 and 1: the one an open of them writes."""
    device = NvmlDevice([0, 1], record_folders=[records])
    device.set_frequency_hz(1500e6)
    [path] = _record_files(records)
    data = json.loads(path.read_text())
    data.update(pid=pid, start_ticks=process_start_ticks(pid), boot_id=boot or data["boot_id"])
    device.record.path = None  # keep the file: this "process" is killed, it does not close
    device.close()
    path.write_text(json.dumps(data))
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=20)
    return child.pid


def test_locking_writes_a_record_and_close_removes_it(nvml, records: Path) -> None:
    m, gpus = nvml
    device = NvmlDevice([1, 0])
    assert _record_files(records) == []  # nothing locked yet
    device.set_frequency_hz(1500e6)
    [path] = _record_files(records)
    data = json.loads(path.read_text())
    assert data["format"] == RECORD_FORMAT and data["pid"] == os.getpid() and data["boot_id"] == boot_id()
    assert data["gpus"] == [f"GPU-{h:08d}-5f2c-4c1e-9a4b-000000000000" for h in (0, 1)]
    assert data["start_ticks"] == process_start_ticks(os.getpid()) and data["written_at"] > 0
    device.set_frequency_hz(1005e6)
    assert _record_files(records) == [path]
    device.close()
    assert _record_files(records) == [] and gpus.locked == {0: None, 1: None}


def test_uuids_missing_key_the_record_by_index(nvml, records: Path) -> None:
    m, gpus = nvml
    m.nvmlDeviceGetUUID.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    device = NvmlDevice([0, 1])
    device.set_frequency_hz(1500e6)
    [path] = _record_files(records)
    assert json.loads(path.read_text())["gpus"] == ["0", "1"]
    device.close()


def test_a_failed_first_lock_leaves_no_record(nvml, records: Path) -> None:
    m, gpus = nvml
    m.nvmlDeviceSetGpuLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    device = NvmlDevice([0, 1])
    with pytest.raises(NvmlNoPermissionError):
        device.set_frequency_hz(1500e6)
    assert _record_files(records) == []
    device.close()
    m.nvmlDeviceResetGpuLockedClocks.assert_not_called()


def test_a_dead_runs_record_resets_the_clocks_at_open(nvml, records: Path, caplog) -> None:
    m, gpus = nvml
    pid = _dead_pid()
    path = _write_record(records, pid)
    gpus.locked = {0: 1500, 1: 1500}  # left locked
    m.nvmlDeviceResetGpuLockedClocks.reset_mock()
    with caplog.at_level(logging.INFO, logger="vllm.camel"):
        device = NvmlDevice([0, 1])
    assert m.nvmlDeviceResetGpuLockedClocks.call_args_list == [mock.call(0), mock.call(1)]
    assert gpus.locked == {0: None, 1: None}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"camel: GPU clocks of 0, 1 were left locked by an earlier run (pid {pid}) that did not restore them; "
        "reset them (nvmlDeviceResetGpuLockedClocks)"
    ]
    assert not path.exists()
    device.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        NvmlDevice([0, 1]).close()
    assert not caplog.records  # a clean start says nothing


def test_a_dead_runs_record_of_other_gpus_is_not_acted_on(nvml, records: Path) -> None:
    m, gpus = nvml
    path = _write_record(records, _dead_pid())
    m.nvmlDeviceResetGpuLockedClocks.reset_mock()
    NvmlDevice([0]).close()
    m.nvmlDeviceResetGpuLockedClocks.assert_not_called()
    assert path.exists()


def test_a_failed_reset_at_open_keeps_the_record(nvml, records: Path, caplog) -> None:
    m, gpus = nvml
    pid = _dead_pid()
    path = _write_record(records, pid)
    m.nvmlDeviceResetGpuLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        device = NvmlDevice([0, 1])
    [line] = [r.getMessage() for r in caplog.records]
    assert f"(pid {pid})" in line and "resetting them failed" in line and "nvidia-smi -rgc" in line
    device.close()
    assert path.exists()  # the next start (as root) resets them


def test_a_live_processs_record_is_not_acted_on_nor_overwritten(nvml, records: Path, caplog) -> None:
    m, gpus = nvml
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = _write_record(records, holder.pid)
        before = path.read_text()
        m.nvmlDeviceResetGpuLockedClocks.reset_mock()
        with caplog.at_level(logging.INFO, logger="vllm.camel"):
            device = NvmlDevice([0, 1])
        m.nvmlDeviceResetGpuLockedClocks.assert_not_called()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(f"process {holder.pid} also locks" in r.getMessage() for r in caplog.records)
        device.set_frequency_hz(1005e6)
        assert path.read_text() == before
        device.close()  # resets this run's locks, and leaves the holder's record alone
        assert path.read_text() == before
    finally:
        holder.kill()
        holder.wait(timeout=20)
    device = NvmlDevice([0, 1])  # the holder is gone: its record is a dead run's now
    assert not path.exists()
    device.close()


def test_a_record_from_another_boot_is_ignored(nvml, records: Path) -> None:
    m, gpus = nvml
    path = _write_record(records, _dead_pid(), boot="0000-another-boot")
    m.nvmlDeviceResetGpuLockedClocks.reset_mock()
    NvmlDevice([0, 1]).close()
    m.nvmlDeviceResetGpuLockedClocks.assert_not_called()
    assert not path.exists()  # dropped as stale


def test_read_only_never_resets_a_dead_runs_lock(nvml, records: Path, caplog) -> None:
    m, gpus = nvml
    pid = _dead_pid()
    path = _write_record(records, pid)
    m.reset_mock()
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        device = make_device(CamelConfig(device="nvml", read_only=True), gpu_indices=[0, 1])
    device.restore()
    device.close()
    for name in SETTERS:
        getattr(m, name).assert_not_called()
    [line] = [r.getMessage() for r in caplog.records]
    assert f"(pid {pid})" in line and "sudo nvidia-smi -rgc" in line
    assert path.exists()


HOLDER = textwrap.dedent(
    """
    import importlib.util, sys, time
    from pathlib import Path
    from unittest import mock
    spec = importlib.util.spec_from_file_location("nvml_tests", sys.argv[1])
    tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests)
    with mock.patch.dict(sys.modules, {"pynvml": tests.fake_pynvml(tests.FakeGpus())}):
        device = tests.NvmlDevice([0, 1], record_folders=[Path(sys.argv[2])])
        device.set_frequency_hz(1500e6)
        print("locked", flush=True)
        while True:
            time.sleep(0.05)
    """
)


def test_kill_9_then_the_next_open_resets_the_locked_clocks(nvml, records: Path, caplog) -> None:
    m, gpus = nvml
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, __file__, str(records)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked", holder.stderr.read()
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=20) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
    assert len(_record_files(records)) == 1
    gpus.locked = {0: 1500, 1: 1500}  # what the killed run left on the (shared) GPUs
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        device = NvmlDevice([0, 1])
    assert [r.getMessage() for r in caplog.records] == [
        f"camel: GPU clocks of 0, 1 were left locked by an earlier run (pid {holder.pid}) that did not restore "
        "them; reset them (nvmlDeviceResetGpuLockedClocks)"
    ]
    assert m.nvmlDeviceResetGpuLockedClocks.call_args_list == [mock.call(0), mock.call(1)]
    assert gpus.locked == {0: None, 1: None} and _record_files(records) == []
    device.close()


def test_a_reset_that_fails_at_exit_is_one_line_and_the_next_start_resets(nvml, records: Path, caplog) -> None:
    """Permission taken away mid-run (issue 23, item 2): close says in one line which GPUs stay
    locked at which clock and that the record is kept; the next start resets them."""
    m, gpus = nvml
    device = NvmlDevice([0, 1])
    device.set_frequency_hz(1005e6)
    [path] = _record_files(records)
    m.nvmlDeviceResetGpuLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    with caplog.at_level(logging.INFO, logger="vllm.camel"):
        device.restore()  # never raises
        device.close()  # nothing more to say
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "camel: resetting the locked clocks failed (GPU 0: Insufficient Permissions; GPU 1: Insufficient "
        f"Permissions); they stay locked at 1005 MHz; the record {path} is kept, so the next start resets them "
        "(or run `sudo nvidia-smi -rgc`)"
    ]
    assert path.exists() and gpus.locked == {0: 1005, 1: 1005}
    m.nvmlDeviceResetGpuLockedClocks.side_effect = lambda h: gpus.locked.__setitem__(h, None)
    # The next start: a record whose process is gone (this process's own pid counts as gone).
    NvmlDevice([0, 1]).close()
    assert gpus.locked == {0: None, 1: None} and not path.exists()
