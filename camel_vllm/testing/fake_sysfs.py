"""Fake Jetson AGX Orin sysfs trees, for the device tests and the real-engine SIGTERM test.

:func:`build_fake_orin_tree` lays out, under a temporary ``root``, what a JetPack 5 or 6
board shows (docs/devices.md): the GPU devfreq node found through
``/sys/class/devfreq/*/device/of_node/name`` (``gpu`` on JetPack 6, ``ga10b`` on JetPack 5,
plus a non-GPU decoy node), Hz units, the INA3221 hwmon folders under
``/sys/bus/i2c/drivers/ina3221/1-004x/hwmon/hwmonN`` with labels, ``NC`` channels,
``update_interval``, the shunt-voltage inputs ``in4..6_input`` (no label) and the driver's
channel 7, ``in7_label`` "sum of shunt voltages" with ``in7_input`` but no ``curr7_input``
(Linux ``drivers/hwmon/ina3221.c``; jetson-stats skips it), and ``/etc/nv_tegra_release``.
Point a device at it with
``sysfs_root=str(root)`` (``CamelConfig(device="jetson", sysfs_root=...)``).

``cur_freq`` is a symlink to ``min_freq``: after a pin (min = max = F) it reads F, as the
kernel would. :meth:`FakeOrinTree.cap_cur_freq` replaces it by a fixed value (an nvpmodel
cap). :meth:`FakeOrinTree.hide_rail` takes a rail's files away (a sensor gap: reads fail
with ENOENT) and :meth:`FakeOrinTree.show_rail` puts them back.

Faults. :meth:`FakeOrinTree.fail` makes reads or writes of one file fail with an errno (EIO,
EACCES, EROFS): a process running as root can write a read-only file, and no plain file
returns EIO, so faults cannot be made with file modes. They are written to a fault file in
the tree (:data:`FAULTS_FILE`) and raised by :class:`FaultySysfsAccess`, the sysfs access
class that :func:`build_fake_orin_tree` registers for the tree's root
(:func:`camel_vllm.devices.jetson.sysfs.register_sysfs_access`). Production code never looks for
the fault file: it opens every root through :func:`~camel_vllm.devices.jetson.sysfs.open_sysfs`,
which returns the plain :class:`~camel_vllm.devices.jetson.sysfs.SysfsAccess` unless a class was
registered for that root, and only this module registers one. The registration holds in
this process and in processes forked after it (vLLM's engine core is forked by default); a
process started afresh calls :func:`install_fault_injection` for the root, and from then on
sees the faults any process writes to the tree (the file is read at every access).
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from camel_vllm.devices.jetson.sysfs import PERMISSION_ERRNOS, SysfsAccess, register_sysfs_access

#: The fault file, relative to the fake tree's root: ``{relative path: {"read"|"write": errno name}}``.
FAULTS_FILE = ".camel-fake-sysfs-faults.json"

#: The Camel paper's grid on the AGX Orin 32GB (arXiv 2508.09173), in Hz.
ORIN_32GB_FREQS_HZ: tuple[int, ...] = (306000000, 408000000, 510000000, 612000000, 714000000, 816000000, 930750000)
#: (address, channel, label) on an AGX Orin (docs/devices.md); NC = not connected.
ORIN_AGX_CHANNELS: tuple[tuple[str, int, str], ...] = (
    ("1-0040", 1, "VDD_GPU_SOC"),
    ("1-0040", 2, "VDD_CPU_CV"),
    ("1-0040", 3, "VIN_SYS_5V0"),
    ("1-0041", 1, "NC"),
    ("1-0041", 2, "VDDQ_VDD2_1V8AO"),
    ("1-0041", 3, "NC"),
)
#: A published quiet AGX Orin reading, as (mV, mA): about 5.2, 2.7, 4.7 and 0.6 W.
QUIET_RAILS: dict[str, tuple[int, int]] = {
    "VDD_GPU_SOC": (5000, 1040),
    "VDD_CPU_CV": (5000, 540),
    "VIN_SYS_5V0": (5000, 940),
    "VDDQ_VDD2_1V8AO": (5000, 120),
}
GOVERNORS = "userspace tegra_wmark nvhost_podgov performance simple_ondemand"


@dataclass
class FakeOrinTree:
    """Paths of a fake board and helpers to read its state back and to inject faults."""

    root: Path
    jetpack: int
    devfreq: Path  # the real device folder (the class entry links here)
    class_link: Path
    hwmon: dict[str, Path] = field(default_factory=dict)  # address -> hwmonN folder
    channels: dict[str, tuple[str, int]] = field(default_factory=dict)  # label -> (address, channel)

    # ---------------------------------------------------------------- state
    @property
    def min_freq_path(self) -> Path:
        return self.devfreq / "min_freq"

    @property
    def max_freq_path(self) -> Path:
        return self.devfreq / "max_freq"

    @property
    def cur_freq_path(self) -> Path:
        return self.devfreq / "cur_freq"

    @property
    def governor_path(self) -> Path:
        return self.devfreq / "governor"

    def min_freq(self) -> int:
        return int(self.min_freq_path.read_text())

    def max_freq(self) -> int:
        return int(self.max_freq_path.read_text())

    def cur_freq(self) -> int:
        return int(self.cur_freq_path.read_text())

    def governor(self) -> str:
        return self.governor_path.read_text().strip()

    def set_governor(self, name: str) -> None:
        self.governor_path.write_text(name + "\n")

    def cap_cur_freq(self, freq_hz: int) -> None:
        """``cur_freq`` stops following writes and reads ``freq_hz`` (an nvpmodel/thermal cap)."""
        self.cur_freq_path.unlink()
        self.cur_freq_path.write_text(f"{int(freq_hz)}\n")

    def follow_writes(self) -> None:
        """``cur_freq`` follows ``min_freq`` again (the default)."""
        self.cur_freq_path.unlink()
        self.cur_freq_path.symlink_to("min_freq")

    # ----------------------------------------------------------------- rails
    def rail_paths(self, label: str) -> tuple[Path, Path]:
        address, channel = self.channels[label]
        hwmon = self.hwmon[address]
        return hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input"

    def set_rail(self, label: str, millivolts: float, milliamps: float) -> None:
        volt, curr = self.rail_paths(label)
        volt.write_text(f"{int(round(millivolts))}\n")
        curr.write_text(f"{int(round(milliamps))}\n")

    def set_rail_power(self, label: str, power_w: float, millivolts: float = 5000.0) -> None:
        self.set_rail(label, millivolts, power_w * 1e6 / millivolts)

    def hide_rail(self, label: str) -> None:
        """The rail's input files disappear (renamed aside): every read of them fails."""
        for path in self.rail_paths(label):
            path.rename(path.with_name(path.name + ".hidden"))

    def show_rail(self, label: str) -> None:
        """Undo :meth:`hide_rail`."""
        for path in self.rail_paths(label):
            path.with_name(path.name + ".hidden").rename(path)

    # ---------------------------------------------------------------- faults
    def fail(self, path: Path | str, *, read: str | None = None, write: str | None = None) -> None:
        """Make reads and/or writes of ``path`` fail with an errno name (``"EIO"``, ``"EACCES"``)."""
        faults = self._faults()
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(self.root))
        entry = faults.setdefault(rel, {})
        if read:
            entry["read"] = read
        if write:
            entry["write"] = write
        (self.root / FAULTS_FILE).write_text(json.dumps(faults))

    def clear_faults(self) -> None:
        (self.root / FAULTS_FILE).unlink(missing_ok=True)

    def _faults(self) -> dict[str, dict[str, str]]:
        path = self.root / FAULTS_FILE
        return json.loads(path.read_text()) if path.exists() else {}


class FaultySysfsAccess(SysfsAccess):
    """:class:`SysfsAccess` that raises the faults :meth:`FakeOrinTree.fail` wrote for its root."""

    def read(self, path: Path) -> str:
        self._inject(path, "read")
        return super().read(path)

    def write(self, path: Path, value: str) -> None:
        self._inject(path, "write")
        super().write(path, value)

    def write_problem(self, path: Path) -> int | None:
        code = self._fault(path, "write")
        if code is not None and code in PERMISSION_ERRNOS:
            return code
        return super().write_problem(path)

    def _fault(self, path: Path, op: str) -> int | None:
        faults_path = self.root / FAULTS_FILE
        if not faults_path.exists():
            return None
        try:
            faults = json.loads(faults_path.read_text(encoding="utf-8"))
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(self.root))
        except (OSError, ValueError):
            return None
        name = faults.get(rel, {}).get(op)
        return getattr(errno, name) if name else None

    def _inject(self, path: Path, op: str) -> None:
        code = self._fault(path, op)
        if code is not None:
            raise OSError(code, os.strerror(code), str(path))


def install_fault_injection(root: Path | str) -> None:
    """Open ``root`` through :class:`FaultySysfsAccess` in this process (and its forks)."""
    register_sysfs_access(root, FaultySysfsAccess)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def build_fake_orin_tree(
    root: Path,
    jetpack: int = 6,
    *,
    freqs_hz: Sequence[int] = ORIN_32GB_FREQS_HZ,
    governor: str = "nvhost_podgov",
    rails: Mapping[str, tuple[float, float]] | None = None,
    update_interval_ms: int = 13,
    sum_channel: bool = True,
) -> FakeOrinTree:
    """Build a JetPack ``jetpack`` (5 or 6) AGX Orin tree under ``root``; returns its handle.

    ``rails`` maps label -> (mV, mA); defaults to the quiet reading above.
    ``update_interval_ms`` 13 is the ~77 Hz seen on an Orin Nano (a published measurement).
    ``sum_channel``: each chip also shows the shunt voltages ``in4..6_input`` and channel 7
    ("sum of shunt voltages", ``in7_input`` without ``curr7_input``), as the Linux driver does.
    """
    if jetpack not in (5, 6):
        raise ValueError(f"jetpack must be 5 or 6, got {jetpack}")
    root = Path(root)
    freqs = sorted(int(f) for f in freqs_hz)
    if jetpack == 6:
        device = root / "sys/devices/platform/bus@0/17000000.gpu"
        of_node = root / "sys/firmware/devicetree/base/bus@0/gpu@17000000"
        node_name, of_name = "17000000.gpu", "gpu"
        release = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64"
        i2c = root / "sys/devices/platform/bus@0/c240000.i2c/i2c-1"
        hwmon_index = {"1-0040": 1, "1-0041": 2}
    else:
        device = root / "sys/devices/17000000.ga10b"
        of_node = root / "sys/firmware/devicetree/base/gpu@17000000"
        node_name, of_name = "17000000.ga10b", "ga10b"
        release = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64"
        i2c = root / "sys/devices/platform/c240000.i2c/i2c-1"
        hwmon_index = {"1-0040": 3, "1-0041": 4}
    _write(root / "etc/nv_tegra_release", release)
    # devicetree node names end with a NUL byte
    of_node.mkdir(parents=True, exist_ok=True)
    (of_node / "name").write_bytes(of_name.encode() + b"\x00")
    _link(device / "of_node", of_node)
    devfreq = device / "devfreq" / node_name
    _write(devfreq / "available_frequencies", " ".join(str(f) for f in freqs))
    _write(devfreq / "min_freq", str(freqs[0]))
    _write(devfreq / "max_freq", str(freqs[-1]))
    (devfreq / "cur_freq").symlink_to("min_freq")
    _write(devfreq / "governor", governor)
    _write(devfreq / "available_governors", GOVERNORS)
    _write(devfreq / "trans_stat", "     From  :   To\n")
    _link(devfreq / "device", device)
    class_link = root / "sys/class/devfreq" / node_name
    _link(class_link, devfreq)
    # a non-GPU devfreq node that discovery must skip
    decoy = root / "sys/devices/platform/15340000.vic"
    decoy_of = root / "sys/firmware/devicetree/base/vic@15340000"
    decoy_of.mkdir(parents=True, exist_ok=True)
    (decoy_of / "name").write_bytes(b"vic\x00")
    _link(decoy / "of_node", decoy_of)
    _write(decoy / "devfreq/15340000.vic/available_frequencies", "115200000 729600000")
    _link(decoy / "devfreq/15340000.vic/device", decoy)
    _link(root / "sys/class/devfreq/15340000.vic", decoy / "devfreq/15340000.vic")

    tree = FakeOrinTree(root=root, jetpack=jetpack, devfreq=devfreq, class_link=class_link)
    install_fault_injection(root)
    values: dict[str, tuple[float, float]] = dict(QUIET_RAILS)
    values.update(rails or {})
    for address, index in hwmon_index.items():
        chip = i2c / address
        hwmon = chip / "hwmon" / f"hwmon{index}"
        _write(hwmon / "name", "ina3221")
        _write(hwmon / "update_interval", str(update_interval_ms))
        _write(hwmon / "samples", "512")
        _link(root / "sys/bus/i2c/drivers/ina3221" / address, chip)
        tree.hwmon[address] = root / "sys/bus/i2c/drivers/ina3221" / address / "hwmon" / f"hwmon{index}"
    for address, channel, label in ORIN_AGX_CHANNELS:
        hwmon = tree.hwmon[address]
        _write(hwmon / f"in{channel}_label", label)
        millivolts, milliamps = values.get(label, (0, 0))
        _write(hwmon / f"in{channel}_input", str(int(millivolts)))
        _write(hwmon / f"curr{channel}_input", str(int(milliamps)))
        if label != "NC":
            tree.channels[label] = (address, channel)
    if sum_channel:
        for hwmon in tree.hwmon.values():
            for channel in (4, 5, 6):  # shunt voltages (mV), no label
                _write(hwmon / f"in{channel}_input", "8")
            _write(hwmon / "in7_label", "sum of shunt voltages")
            _write(hwmon / "in7_input", "24")
    return tree
