"""Jetson backend against fake JetPack 5 and 6 sysfs trees (devfreq + INA3221)."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.devices.base import DeviceError, DevicePermissionError
from camel_vllm.devices.jetson.device import JetsonDevice
from camel_vllm.devices.jetson.sysfs import SysfsAccess, find_rails, open_sysfs
from camel_vllm.devices.registry import make_device
from camel_vllm.testing.fake_sysfs import ORIN_32GB_FREQS_HZ, build_fake_orin_tree

REPO = Path(__file__).resolve().parents[2]


class RecordingAccess(SysfsAccess):
    """The real file access, plus a log of writes and a check of min <= max after each."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writes: list[tuple[str, str]] = []
        self.invariant_broken = False

    def write(self, path: Path, value: str) -> None:
        super().write(path, value)
        self.writes.append((path.name, value))
        folder = path.parent
        if (folder / "min_freq").exists() and (folder / "max_freq").exists():
            if int((folder / "min_freq").read_text()) > int((folder / "max_freq").read_text()):
                self.invariant_broken = True


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


@pytest.mark.parametrize("jetpack,node", [(5, "17000000.ga10b"), (6, "17000000.gpu")])
def test_discovers_gpu_node_and_rails(tmp_path: Path, jetpack: int, node: str) -> None:
    tree = build_fake_orin_tree(tmp_path, jetpack)
    device = JetsonDevice(str(tmp_path), rails="all", start_sampler=False, install_exit_restore=False)
    try:
        assert device.node.name == node  # the vic decoy node is skipped
        assert list(device.available_frequencies_hz()) == [float(f) for f in ORIN_32GB_FREQS_HZ]
        assert device.current_frequency_hz() == float(tree.min_freq())
        labels = [r.label for r in device.rails]
        assert labels == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]  # NC skipped
        assert device.power_w() == pytest.approx(5.2 + 2.7 + 4.7 + 0.6)
        info = device.info()
        assert info.kind == "jetson" and info.energy_source == "measured" and info.can_set_frequency
    finally:
        device.close()


def test_default_rail_is_gpu_and_unknown_rail_is_config_error(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    tree.set_rail("VDD_GPU_SOC", 5000, 8000)
    device = JetsonDevice(str(tmp_path), start_sampler=False, install_exit_restore=False)
    assert device.power_w() == pytest.approx(40.0)
    device.close()
    with pytest.raises(ConfigError) as err:
        JetsonDevice(str(tmp_path), rails="VDD_GPU_SOC,VDD_NOPE", start_sampler=False, install_exit_restore=False)
    assert err.value.key == "rails" and "VDD_NOPE" in str(err.value)


@pytest.mark.parametrize("jetpack", [5, 6])
def test_write_order_raising_and_lowering(tmp_path: Path, jetpack: int) -> None:
    tree = build_fake_orin_tree(tmp_path, jetpack)
    access = RecordingAccess(tmp_path)
    device = JetsonDevice(str(tmp_path), access=access, start_sampler=False, install_exit_restore=False)
    assert device.set_frequency_hz(408e6) == 408e6  # from the range 306..930.75: max first keeps min <= max
    assert access.writes == [("max_freq", "408000000"), ("min_freq", "408000000")]
    access.writes.clear()
    assert device.set_frequency_hz(930.75e6) == 930.75e6  # raising: max first
    assert access.writes == [("max_freq", "930750000"), ("min_freq", "930750000")]
    access.writes.clear()
    assert device.set_frequency_hz(612e6) == 612e6  # lowering: min first
    assert access.writes == [("min_freq", "612000000"), ("max_freq", "612000000")]
    assert (tree.min_freq(), tree.max_freq(), tree.cur_freq()) == (612000000, 612000000, 612000000)
    assert not access.invariant_broken
    device.close()
    assert (tree.min_freq(), tree.max_freq(), tree.governor()) == (306000000, 930750000, "nvhost_podgov")
    assert not access.invariant_broken


def test_nearest_step_is_written(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    device = JetsonDevice(str(tmp_path), start_sampler=False, install_exit_restore=False)
    assert device.set_frequency_hz(930.7e6) == 930.75e6
    assert tree.max_freq() == 930750000
    device.close()


def test_read_back_mismatch_is_returned(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    tree.cap_cur_freq(612000000)  # e.g. the nvpmodel 30W mode caps the GPU at 612 MHz
    device = JetsonDevice(str(tmp_path), start_sampler=False, install_exit_restore=False)
    assert device.set_frequency_hz(930.75e6) == 612e6
    device.close()


def test_eacces_on_write_is_permission_error(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    tree.fail(tree.max_freq_path, write="EACCES")
    tree.fail(tree.min_freq_path, write="EACCES")
    device = JetsonDevice(str(tmp_path), start_sampler=False, install_exit_restore=False)
    assert device.info().can_set_frequency is False
    with pytest.raises(DevicePermissionError) as err:
        device.set_frequency_hz(612e6)
    message = str(err.value)
    assert "\n" not in message and "root" in message and "udev" in message
    assert (tree.min_freq(), tree.max_freq()) == (306000000, 930750000)
    tree.clear_faults()
    device.close()


def test_eio_on_write_is_device_error(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    tree.fail(tree.max_freq_path, write="EIO")
    device = JetsonDevice(str(tmp_path), start_sampler=False, install_exit_restore=False)
    with pytest.raises(DeviceError) as err:
        device.set_frequency_hz(612e6)
    assert not isinstance(err.value, DevicePermissionError)
    tree.clear_faults()
    device.close()


FAULT_READER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from camel_vllm.devices.jetson.sysfs import open_sysfs
    from camel_vllm.testing.fake_sysfs import install_fault_injection
    install_fault_injection(sys.argv[1])
    access = open_sysfs(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # the parent sets a fault, then writes a line
    try:
        print("read", access.read(Path(sys.argv[2])), flush=True)
    except OSError as err:
        print("errno", err.errno, flush=True)
    """
)


def test_faults_come_from_the_testing_access_only_and_reach_other_processes(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    tree.fail(tree.max_freq_path, read="EIO")
    assert SysfsAccess(tmp_path).read(tree.max_freq_path) == "930750000"  # production access: no fault file
    with pytest.raises(OSError) as err:
        open_sysfs(str(tmp_path)).read(tree.max_freq_path)  # the fake tree registered its access
    assert err.value.errno == errno.EIO
    tree.clear_faults()
    child = subprocess.Popen([sys.executable, "-c", FAULT_READER, str(tmp_path), str(tree.min_freq_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        tree.fail(tree.min_freq_path, read="EIO")  # written after the child opened the tree
        out, _ = child.communicate("go\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.strip() == f"errno {errno.EIO}"
    tree.clear_faults()


def test_eio_on_rail_read_is_skipped_counted_and_monotonic(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    tree.set_rail_power("VDD_GPU_SOC", 10.0)
    clock = FakeClock()
    device = JetsonDevice(str(tmp_path), clock=clock, start_sampler=False, install_exit_restore=False)
    sampler = device.sampler
    assert sampler is not None
    assert sampler.sample()
    clock.now_s = 1.0
    assert device.energy_j() == pytest.approx(10.0)
    volt, _ = tree.rail_paths("VDD_GPU_SOC")
    tree.fail(volt, read="EIO")
    clock.now_s = 2.0
    before = device.energy_j()
    assert sampler.sample() is False
    assert sampler.skipped >= 2 and device.info().extra["skipped_samples"] == sampler.skipped
    assert device.energy_j() == before  # the failed reads added nothing and took nothing away
    tree.clear_faults()
    tree.set_rail_power("VDD_GPU_SOC", 20.0)
    clock.now_s = 3.0
    assert device.energy_j() == pytest.approx(10.0 + 0.5 * (10.0 + 20.0) * 2.0)  # the gap is integrated
    device.close()


def test_background_sampler_integrates(tmp_path: Path) -> None:
    build_fake_orin_tree(tmp_path, 5)
    device = make_device(CamelConfig(device="jetson", sysfs_root=str(tmp_path), sample_hz=200.0))
    try:
        assert device.info().extra["sample_period_s"] == pytest.approx(0.005)
        readings = [device.energy_j() for _ in range(50)]
        assert readings == sorted(readings)
    finally:
        device.close()


def test_sample_rate_defaults_to_slower_of_50hz_and_sensor(tmp_path: Path) -> None:
    build_fake_orin_tree(tmp_path, 6, update_interval_ms=100)
    device = JetsonDevice(str(tmp_path), start_sampler=False, install_exit_restore=False)
    assert device.sampler is not None and device.sampler.period_s == pytest.approx(0.1)
    device.close()


def test_restore_puts_back_min_max_and_governor(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6, governor="nvhost_podgov")
    device = JetsonDevice(str(tmp_path), start_sampler=False, install_exit_restore=False)
    device.set_frequency_hz(510e6)
    tree.set_governor("userspace")  # someone changed it meanwhile
    device.close()
    device.close()  # idempotent
    assert (tree.min_freq(), tree.max_freq(), tree.governor()) == (306000000, 930750000, "nvhost_podgov")


def test_read_only_never_writes(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    access = RecordingAccess(tmp_path)
    device = JetsonDevice(str(tmp_path), read_only=True, access=access, start_sampler=False)
    assert device.info().can_set_frequency is False and device.info().read_only
    with pytest.raises(DevicePermissionError):
        device.set_frequency_hz(612e6)
    device.energy_j()
    device.restore()
    device.close()
    assert access.writes == []
    assert (tree.min_freq(), tree.max_freq()) == (306000000, 930750000)


def test_make_device_read_only_config(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    device = make_device(CamelConfig(device="jetson", sysfs_root=str(tmp_path), read_only=True))
    before = {p: p.stat().st_mtime_ns for p in (tree.min_freq_path, tree.max_freq_path, tree.governor_path)}
    with pytest.raises(DevicePermissionError):
        device.set_frequency_hz(612e6)
    device.close()
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_missing_devfreq_node_is_device_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="no GPU devfreq node"):
        JetsonDevice(str(tmp_path))


def test_find_rails_globs_hwmon_index(tmp_path: Path) -> None:
    build_fake_orin_tree(tmp_path, 5)  # hwmon3/hwmon4 on the JetPack 5 layout
    rails = find_rails(SysfsAccess(tmp_path))
    assert {r.hwmon.name for r in rails} == {"hwmon3", "hwmon4"}


CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from camel_vllm.devices.jetson.device import JetsonDevice
    if sys.argv[2] == "vllm-like":  # a process whose own SIGTERM handler exits through SystemExit
        def handler(signum, frame):
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, handler)
    device = JetsonDevice(sys.argv[1], sample_hz=100)
    device.set_frequency_hz(612e6)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


@pytest.mark.parametrize("mode", ["plain", "vllm-like"])
def test_restore_after_sigterm(tmp_path: Path, mode: str) -> None:
    tree = build_fake_orin_tree(tmp_path / "root", 6)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "root"), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        assert (tree.min_freq(), tree.max_freq()) == (612000000, 612000000)
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    # plain: our handler restored and re-raised (killed by SIGTERM); vllm-like: their handler
    # kept control and exited 0, atexit restored
    assert code == (-signal.SIGTERM if mode == "plain" else 0)
    assert (tree.min_freq(), tree.max_freq(), tree.governor()) == (306000000, 930750000, "nvhost_podgov")


def _forked_engine_like(root: str, ready) -> None:
    """Like vLLM's engine core: its own SIGTERM handler first, then the device, exit via os._exit."""
    import time as _time

    def handler(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)
    device = JetsonDevice(root, sample_hz=100)
    device.set_frequency_hz(510e6)
    ready.set()
    while True:
        _time.sleep(0.05)


def test_restore_in_forked_child_on_sigterm(tmp_path: Path) -> None:
    import multiprocessing

    tree = build_fake_orin_tree(tmp_path, 6)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_forked_engine_like, args=(str(tmp_path), ready))
    child.start()
    try:
        assert ready.wait(20)
        assert tree.max_freq() == 510000000
        child.terminate()  # SIGTERM
        child.join(20)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert (tree.min_freq(), tree.max_freq(), tree.governor()) == (306000000, 930750000, "nvhost_podgov")


# ------------------------------------------- a restore that fails (issue 23, item 2)
EXIT_CHILD = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from camel_vllm.devices.jetson.device import JetsonDevice
    from camel_vllm.testing.fake_sysfs import install_fault_injection
    install_fault_injection(sys.argv[1])
    device = JetsonDevice(sys.argv[1], sample_hz=100)
    device.set_frequency_hz(612e6)
    print("pinned", flush=True)
    sys.stdin.readline()  # the permission is taken away meanwhile
    if sys.argv[2] == "scheduler":  # what the vLLM scheduler does on SIGTERM, then at shutdown
        try:
            device.restore()
        except Exception:
            logging.getLogger("vllm.camel").exception("camel: restoring the device on signal failed")
        device.close()
    # "exit": nothing; atexit and the multiprocessing finaliser restore
    """
)


def _left_line(tree, node: Path, record: Path) -> str:
    return (f"ERROR camel: restoring the GPU clock at {node} failed (jetson: cannot write {node / 'max_freq'} "
            f"(Permission denied): run as root, or install the udev rule in docs/devices.md that lets your group "
            f"write the GPU devfreq min_freq/max_freq (or set read_only: true)); it is left at min_freq 612000000 "
            f"max_freq 612000000 governor nvhost_podgov; the record {record} is kept, so the next start puts back "
            f"min_freq 306000000 max_freq 930750000 governor nvhost_podgov")


@pytest.mark.parametrize("mode", ["exit", "scheduler"])
def test_a_restore_that_fails_at_exit_is_one_line_and_the_next_start_puts_the_clock_back(tmp_path: Path,
                                                                                         mode: str) -> None:
    root = tmp_path / "root"
    tree = build_fake_orin_tree(root, 6, governor="nvhost_podgov")
    child = subprocess.Popen([sys.executable, "-c", EXIT_CHILD, str(root), mode], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "pinned"
        for path in (tree.min_freq_path, tree.max_freq_path, tree.governor_path):
            tree.fail(path, write="EACCES")  # the udev rule was removed mid-run
        _, stderr = child.communicate("\n", timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0
    [record] = list((root / "run" / "camel-vllm").glob("jetson-gpu-*.json"))
    assert stderr.splitlines() == [_left_line(tree, tree.class_link, record)]  # before: a 25-line traceback
    tree.clear_faults()
    device = JetsonDevice(str(root), start_sampler=False, install_exit_restore=False)  # the next start
    assert (tree.min_freq(), tree.max_freq(), tree.governor()) == (306000000, 930750000, "nvhost_podgov")
    assert not record.exists()
    device.close()


def test_a_restore_that_cannot_even_read_the_clock_says_what_camel_set(tmp_path: Path, caplog) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    device = JetsonDevice(str(tmp_path), start_sampler=False, install_exit_restore=False)
    device.set_frequency_hz(510e6)
    tree.fail(tree.min_freq_path, read="EIO")
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        device.restore()  # never raises
        device.restore()  # tried again (at exit): says nothing more
        device.close()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"camel: restoring the GPU clock at {tree.class_link} failed (jetson: reading "
                           f"{tree.class_link / 'min_freq'} failed: ")
    assert ("; it is left as camel set it (min_freq 510000000 max_freq 510000000); the record "
            in line and line.endswith("so the next start puts back min_freq 306000000 max_freq 930750000 "
                                      "governor nvhost_podgov"))
