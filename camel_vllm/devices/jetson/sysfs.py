"""The Jetson's sysfs: file access under a root, the GPU devfreq node and the INA3221 rails.

The GPU devfreq node is the ``/sys/class/devfreq/*`` entry whose ``device/of_node/name`` is
``gpu`` (JetPack 6) or ``ga10b`` (JetPack 5); frequencies are in Hz. INA3221 channels are under
``/sys/bus/i2c/drivers/ina3221*/*/hwmon/hwmon*/``: a rail is a channel with a real label (not
``NC``) and both ``in<N>_input`` (mV) and ``curr<N>_input`` (mA); the driver's channel 7 ("sum
of shunt voltages") has no current and the shunt voltages ``in4..6_input`` no label. Power in
W is mV x mA / 1e6.

All file access goes through a :class:`SysfsAccess` rooted at ``sysfs_root``, opened by
:func:`open_sysfs`. Another access class can be registered for one root with
:func:`register_sysfs_access`; nothing in camel does so: the testing package does, for its
fake trees (:mod:`camel_vllm.testing.fake_sysfs` injects EIO or EACCES on chosen files, which
no plain file under a root process can produce).
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from camel_vllm.core.config import ConfigError

logger = logging.getLogger("vllm.camel")

#: ``of_node/name`` of the GPU devfreq device: JetPack 6 (L4T 36) and JetPack 5 (L4T 35).
GPU_OF_NODE_NAMES = ("gpu", "ga10b")
DEFAULT_RAIL = "VDD_GPU_SOC"
#: Orin NX / Nano have no VDD_GPU_SOC; their GPU shares this rail (NVIDIA's Jetson power rails).
FALLBACK_RAILS = ("VDD_CPU_GPU_CV",)
#: Errors that mean "this process may not write the clock" (EROFS: sysfs mounted read-only,
#: as in a container): the controller then keeps to batch-only arms.
PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)



class SysfsAccess:
    """Reads and writes sysfs files under ``root`` (text, stripped of NUL and whitespace)."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, path: Path) -> str:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip("\x00\n\t ")

    def write(self, path: Path, value: str) -> None:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(value)

    def write_problem(self, path: Path) -> int | None:
        """The errno a write of ``path`` would fail with for lack of permission, or None."""
        if os.access(path, os.W_OK):
            return None
        return errno.EROFS if _read_only_filesystem(path) else errno.EACCES


#: Access classes registered for particular roots (resolved), see :func:`register_sysfs_access`.
_ACCESS_BY_ROOT: dict[Path, Callable[[str | os.PathLike[str]], SysfsAccess]] = {}


def register_sysfs_access(root: str | os.PathLike[str],
                          factory: Callable[[str | os.PathLike[str]], SysfsAccess]) -> None:
    """Open ``root`` with ``factory`` instead of :class:`SysfsAccess` (in this process and in
    processes it forks afterwards). Used by :mod:`camel_vllm.testing.fake_sysfs` for fake trees."""
    _ACCESS_BY_ROOT[Path(root).resolve()] = factory


def unregister_sysfs_access(root: str | os.PathLike[str]) -> None:
    _ACCESS_BY_ROOT.pop(Path(root).resolve(), None)


def open_sysfs(root: str | os.PathLike[str] = "/") -> SysfsAccess:
    """The access for ``root``: :class:`SysfsAccess` unless another was registered for it."""
    factory = _ACCESS_BY_ROOT.get(Path(root).resolve(), SysfsAccess) if _ACCESS_BY_ROOT else SysfsAccess
    return factory(root)


# --------------------------------------------------------------------------- discovery
def find_gpu_devfreq(access: SysfsAccess) -> Path | None:
    """The GPU's devfreq folder (the class entry), or None when there is none."""
    folder = access.path("/sys/class/devfreq")
    if not folder.is_dir():
        return None
    for entry in sorted(folder.iterdir()):
        try:
            name = access.read(entry / "device" / "of_node" / "name")
        except OSError:
            continue
        if name in GPU_OF_NODE_NAMES:
            return entry
    return None


def is_jetson(root: str = "/") -> bool:
    """A Jetson: ``/etc/nv_tegra_release`` exists or a GPU devfreq node does."""
    access = open_sysfs(root)
    return access.path("/etc/nv_tegra_release").exists() or find_gpu_devfreq(access) is not None


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel: ``label``, bus voltage file (mV) and current file (mA)."""

    label: str
    voltage_path: Path
    current_path: Path
    hwmon: Path


def find_rails(access: SysfsAccess) -> list[Rail]:
    """Every connected INA3221 channel (``NC`` skipped), in address and channel order."""
    rails: list[Rail] = []
    drivers = access.path("/sys/bus/i2c/drivers")
    for label_path in sorted(drivers.glob("ina3221*/*/hwmon/hwmon*/in*_label")):
        channel = label_path.name[len("in"):-len("_label")]
        try:
            label = access.read(label_path)
        except OSError:
            continue
        if not label or label.upper() == "NC":
            continue
        hwmon = label_path.parent
        voltage, current = hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input"
        if not (voltage.exists() and current.exists()):
            continue  # channel 7, "sum of shunt voltages": a voltage without a current, not a rail
        rails.append(Rail(label, voltage, current, hwmon))
    return rails


def select_rails(rails: Sequence[Rail], wanted: str) -> list[Rail]:
    """``VDD_GPU_SOC`` (default), ``all`` or a comma list. Unknown names: ConfigError on ``rails``."""
    by_label = {r.label: r for r in rails}
    if wanted.strip().lower() == "all":
        return list(rails)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    if names == [DEFAULT_RAIL] and DEFAULT_RAIL not in by_label:
        for fallback in FALLBACK_RAILS:
            if fallback in by_label:
                logger.warning("camel: no %s rail on this board; using %s", DEFAULT_RAIL, fallback)
                return [by_label[fallback]]
    missing = [n for n in names if n not in by_label]
    if missing or not names:
        have = ", ".join(by_label) or "none found"
        raise ConfigError("rails", wanted,
                          f"no rail {', '.join(missing) or '(empty)'} on this board (rails: {have}; or 'all')")
    return [by_label[n] for n in names]


def _read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
