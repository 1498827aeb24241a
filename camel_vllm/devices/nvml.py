"""``device: nvml``: NVIDIA GPUs through NVML (package ``nvidia-ml-py``, module ``pynvml``).

From NVML's API reference (docs/devices.md has the details):

- frequencies: ``nvmlDeviceGetSupportedMemoryClocks`` then, for the highest memory clock,
  ``nvmlDeviceGetSupportedGraphicsClocks`` (MHz); all GPUs of a tensor-parallel engine are
  driven together, so only clocks every GPU supports are offered;
- a clock is pinned with ``nvmlDeviceSetGpuLockedClocks(h, f, f)`` and read back with
  ``nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM)`` (an idle GPU may report a lower clock: when
  the clocks-event reasons say *GPU idle* the lock is taken as in force);
  ``nvmlDeviceResetGpuLockedClocks`` on restore. Setting needs root or CAP_SYS_ADMIN, else
  ``NVML_ERROR_NO_PERMISSION`` -> :class:`NvmlNoPermissionError` (a :class:`DevicePermissionError`);
- energy: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load), made monotonic
  across counter resets; where it is NotSupported, ``nvmlDeviceGetPowerUsage`` (mW)
  integrated by a :class:`PowerSampler`. ``info().energy_method`` says which.

In ``read_only`` mode no setter is ever called (not even the reset on exit).

SIGKILL cannot be caught: before camel locks the clocks it records so (the GPUs' UUIDs, a
:class:`~camel_vllm.devices.run_record.RunRecord` ``nvml-gpu-<hash>.json`` under
``/run/camel-vllm``), and removes the record once they are reset. A start on the same GPUs that
finds the record of a process that is gone resets them and says so in one line; a live
process's record is left alone; in ``read_only`` mode it only says how to reset them.

Errors: an NVML failure this backend reports is an :class:`NvmlError` (a :class:`DeviceError`)
of the class its ``NVML_ERROR_*`` code maps to (:func:`nvml_error`: not supported, no
permission, GPU not found, GPU lost, driver or library missing), with pynvml's exception as
``__cause__`` and the code as ``code`` (after Zeus, ``zeus/device/gpu/nvidia.py``). Failures
the backend degrades around (no energy counter, a failed energy read, no clock table) are
logged and not raised.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from camel_vllm.core.events import IterationWork
from camel_vllm.devices.base import DeviceError, DeviceInfo, DevicePermissionError, EnergyReading
from camel_vllm.devices.declaration import DeviceDeclaration, OpenInputs
from camel_vllm.devices.run_record import RunRecord, default_folders
from camel_vllm.devices.sampler import FAILING_AFTER_READS, PowerSampler, sample_period_s

logger = logging.getLogger("vllm.camel")

PERMISSION_LINE = (
    "nvml: locking GPU clocks needs root or CAP_SYS_ADMIN (NVML_ERROR_NO_PERMISSION): run as root, "
    "or set read_only: true for batch-only arms"
)
RECORD_FORMAT = "camel-vllm-nvml-locked-clocks"
#: How long a locked clock takes to take effect: no published figure for A100/H100 was found;
#: the one number is a second-hand range, "roughly 1-500 ms" (arXiv 2604.04745v1 citing arXiv
#: 2502.20075). 10 ms, as the emulated H100 profile (docs/devices.md).
SWITCH_LATENCY_S = 0.010
RESET_BY_HAND = "sudo nvidia-smi -rgc"


class NvmlError(DeviceError):
    """An NVML call failed. ``code`` is NVML's ``NVML_ERROR_*`` value (None: not known);
    pynvml's ``NVMLError`` is ``__cause__``."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NvmlNotSupportedError(NvmlError):
    """``NVML_ERROR_NOT_SUPPORTED``: this GPU or driver does not offer the query or setting."""


class NvmlNoPermissionError(NvmlError, DevicePermissionError):
    """``NVML_ERROR_NO_PERMISSION``: setting clocks needs root or CAP_SYS_ADMIN (batch-only arms)."""


class NvmlNotFoundError(NvmlError):
    """``NVML_ERROR_NOT_FOUND`` / ``INVALID_ARGUMENT`` / ``GPU_NOT_FOUND``: no such GPU index or UUID."""


class NvmlGpuLostError(NvmlError):
    """``NVML_ERROR_GPU_IS_LOST`` / ``RESET_REQUIRED``: the GPU fell off the bus or needs a reset."""


class NvmlDriverError(NvmlError):
    """NVML cannot work here: ``UNINITIALIZED``, ``DRIVER_NOT_LOADED``, ``LIBRARY_NOT_FOUND``,
    ``FUNCTION_NOT_FOUND``, ``LIB_RM_VERSION_MISMATCH``."""


#: pynvml constant name -> class; names, so a pynvml without one of them still imports.
NVML_ERROR_CLASSES: tuple[tuple[str, type[NvmlError]], ...] = (
    ("NVML_ERROR_NOT_SUPPORTED", NvmlNotSupportedError),
    ("NVML_ERROR_NO_PERMISSION", NvmlNoPermissionError),
    ("NVML_ERROR_NOT_FOUND", NvmlNotFoundError),
    ("NVML_ERROR_INVALID_ARGUMENT", NvmlNotFoundError),
    ("NVML_ERROR_GPU_NOT_FOUND", NvmlNotFoundError),
    ("NVML_ERROR_GPU_IS_LOST", NvmlGpuLostError),
    ("NVML_ERROR_RESET_REQUIRED", NvmlGpuLostError),
    ("NVML_ERROR_UNINITIALIZED", NvmlDriverError),
    ("NVML_ERROR_DRIVER_NOT_LOADED", NvmlDriverError),
    ("NVML_ERROR_LIBRARY_NOT_FOUND", NvmlDriverError),
    ("NVML_ERROR_FUNCTION_NOT_FOUND", NvmlDriverError),
    ("NVML_ERROR_LIB_RM_VERSION_MISMATCH", NvmlDriverError),
)


def nvml_error(err: Exception, message: str) -> NvmlError:
    """The :class:`NvmlError` subclass for pynvml's ``err`` with ``message``; raise it ``from err``."""
    code = getattr(err, "value", None)
    nvml = _pynvml()
    for name, cls in NVML_ERROR_CLASSES:
        if code is not None and getattr(nvml, name, None) == code:
            return cls(message, code)
    return NvmlError(message, code)


def _pynvml() -> Any:
    try:
        import pynvml
    except ImportError as err:
        raise DeviceError("device 'nvml' needs nvidia-ml-py (pip install 'camel-vllm[nvml]')") from err
    return pynvml


def parse_visible_devices(value: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` entries (indices or ``GPU-`` UUIDs); None when unset."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


class NvmlDevice:
    """One or more NVIDIA GPUs locked to the same SM clock; energy summed over them."""

    def __init__(
        self,
        gpus: Sequence[int | str] | None = None,
        *,
        read_only: bool = False,
        sample_hz: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        record_folders: Sequence[Path] | None = None,
    ) -> None:
        """``record_folders``: where the locked-clocks record goes (first writable; default
        ``/run/camel-vllm``, ``$XDG_RUNTIME_DIR/camel-vllm``, ``<tmp>/camel-vllm-<uid>``)."""
        nvml = _pynvml()
        self.read_only = read_only
        self._lock = threading.Lock()
        self._closed = False
        self._locked = False
        self._left_locked = False  # a lock (an earlier run's, or this one's) could not be reset
        self._locked_mhz: int | None = None  # the SM clock camel last locked
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as err:
            raise nvml_error(err, f"nvml: cannot initialise NVML: {err}") from err
        try:
            if gpus is None:
                gpus = list(range(nvml.nvmlDeviceGetCount()))
            if not gpus:
                raise DeviceError("nvml: no GPU visible (CUDA_VISIBLE_DEVICES is empty or there is no GPU)")
            self.handles = [self._handle(g) for g in gpus]
            self.gpus = list(gpus)
            self.names = [_text(nvml.nvmlDeviceGetName(h)) for h in self.handles]
            self.uuids = self._uuids()
            key = hashlib.sha1(",".join(self.uuids).encode("utf-8")).hexdigest()[:12]
            self.record = RunRecord(
                f"nvml-gpu-{key}.json", default_folders() if record_folders is None else record_folders,
                format=RECORD_FORMAT,
                unwritable="camel: cannot record that camel locks the GPU clocks (%s); if this process is killed "
                           f"with SIGKILL they stay locked until `{RESET_BY_HAND}` (docs/devices.md)",
            )
            self._recover()
            self._frequencies_hz = self._supported_clocks_hz()
            self._counter_mj: list[float] | None = self._first_energy_mj()
            self._energy_j = [0.0] * len(self.handles)
            self.counter_resets = 0
            # Counter reads that failed, readings that closed such a gap, and counter resets
            # (energy since the last read lost): see EnergyReading.
            self.gaps = 0
            self.failing = 0
            self._failed_in_row = [0] * len(self.handles)
            self.sampler: PowerSampler | None = None
            if self._counter_mj is None:
                self.sampler = PowerSampler(self._read_power_w, sample_period_s(sample_hz, None), clock=clock,
                                            name="camel-nvml-power").start()
        except BaseException:
            nvml.nvmlShutdown()
            raise

    # ------------------------------------------------------------------ protocol
    def info(self) -> DeviceInfo:
        return DeviceInfo(
            kind="nvml",
            name=", ".join(f"{g}:{n}" for g, n in zip(self.gpus, self.names, strict=False)),
            energy_source="measured",
            energy_method="nvml-total-energy" if self.sampler is None else "nvml-power-integrated",
            can_set_frequency=not self.read_only and bool(self._frequencies_hz),
            read_only=self.read_only,
            switch_latency_s=SWITCH_LATENCY_S,
            extra={"gpus": [str(g) for g in self.gpus], "counter_resets": self.counter_resets},
        )

    def available_frequencies_hz(self) -> Sequence[float]:
        return self._frequencies_hz

    def current_frequency_hz(self) -> float | None:
        nvml = _pynvml()
        try:
            return min(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM) for h in self.handles) * 1e6
        except nvml.NVMLError:
            return None

    def set_frequency_hz(self, freq_hz: float) -> float:
        """Lock every GPU to the nearest supported SM clock; returns the lowest read-back (Hz)."""
        if self.read_only:
            raise DevicePermissionError("nvml: read_only is set; GPU clocks are not written")
        if not self._frequencies_hz:
            raise DeviceError("nvml: this GPU reports no supported graphics clocks")
        nvml = _pynvml()
        mhz = int(round(min(self._frequencies_hz, key=lambda f: abs(f - freq_hz)) / 1e6))
        with self._lock:
            if not self._locked:
                self._record_lock()  # before the first lock: a kill -9 can be undone
            for handle in self.handles:
                try:
                    nvml.nvmlDeviceSetGpuLockedClocks(handle, mhz, mhz)
                except nvml.NVMLError as err:
                    if self._locked or handle is not self.handles[0]:
                        self._reset_locked()
                    elif not self._left_locked:
                        self.record.remove()  # nothing was locked
                    if err.value == nvml.NVML_ERROR_NO_PERMISSION:
                        raise nvml_error(err, PERMISSION_LINE) from err
                    raise nvml_error(err, f"nvml: locking clocks at {mhz} MHz failed: {err}") from err
                self._locked = True
                self._locked_mhz = mhz
            return min(self._read_back_mhz(h, mhz) for h in self.handles) * 1e6

    def energy_j(self) -> float:
        return self.energy_reading().energy_j

    def energy_reading(self) -> EnergyReading:
        """The summed counter (J) with the gaps in it (see :class:`EnergyReading`)."""
        if self.sampler is not None:
            return self.sampler.reading()
        nvml = _pynvml()
        with self._lock:
            assert self._counter_mj is not None
            for i, handle in enumerate(self.handles):
                try:
                    raw_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                except nvml.NVMLError as err:
                    self.gaps += 1
                    self._failed_in_row[i] += 1
                    if self._failed_in_row[i] == FAILING_AFTER_READS:
                        self.failing += 1
                        logger.warning("camel: NVML energy counter of GPU %s keeps failing (%s); energy is not "
                                       "measured until it reads again", self.gpus[i], err)
                    else:
                        logger.debug("camel: nvml energy read failed on GPU %s: %s", self.gpus[i], err)
                    continue
                if self._failed_in_row[i]:
                    self.gaps += 1  # this read closes the gap: the energy over it arrives at once
                    self._failed_in_row[i] = 0
                last_mj = self._counter_mj[i]
                if raw_mj < last_mj:  # driver reload: the counter restarted from 0
                    self.counter_resets += 1
                    self.gaps += 1
                    logger.warning("camel: NVML energy counter of GPU %s went back (reset); continuing", self.gpus[i])
                    self._energy_j[i] += raw_mj / 1000.0
                else:
                    self._energy_j[i] += (raw_mj - last_mj) / 1000.0
                self._counter_mj[i] = raw_mj
            return EnergyReading(sum(self._energy_j), self.gaps, self.failing)

    def power_w(self) -> float | None:
        try:
            return self._read_power_w()
        except NvmlError:
            return None

    def iteration_done(self, work: IterationWork, elapsed_s: float) -> float:
        return 0.0

    def restore(self) -> None:
        """Reset locked clocks (NVML cannot read the previous lock back); never in read_only.
        Never raises: a failure is one error line (see :meth:`_reset_locked`)."""
        with self._lock:
            if self._locked and not self.read_only:
                self._reset_locked()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.sampler is not None:
                self.sampler.close()
            self.restore()
        finally:
            nvml = _pynvml()
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass

    # ----------------------------------------------------------------- internals
    def _handle(self, gpu: int | str):
        nvml = _pynvml()
        try:
            if isinstance(gpu, str) and not gpu.isdigit():
                if gpu.startswith("MIG-"):
                    raise DeviceError(f"nvml: MIG instance {gpu} has no clock of its own; use the parent GPU")
                return nvml.nvmlDeviceGetHandleByUUID(gpu)
            return nvml.nvmlDeviceGetHandleByIndex(int(gpu))
        except nvml.NVMLError as err:
            raise nvml_error(err, f"nvml: GPU {gpu}: {err}") from err

    def _supported_clocks_hz(self) -> tuple[float, ...]:
        nvml = _pynvml()
        common: set[int] | None = None
        for handle in self.handles:
            try:
                memory_mhz = max(nvml.nvmlDeviceGetSupportedMemoryClocks(handle))
                graphics = set(int(c) for c in nvml.nvmlDeviceGetSupportedGraphicsClocks(handle, memory_mhz))
            except (nvml.NVMLError, ValueError) as err:
                logger.warning("camel: NVML lists no supported clocks (%s); batch-only arms", err)
                return ()
            common = graphics if common is None else common & graphics
        return tuple(sorted(float(c) * 1e6 for c in common or ()))

    def _first_energy_mj(self) -> list[float] | None:
        nvml = _pynvml()
        counters = []
        for handle in self.handles:
            try:
                counters.append(float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle)))
            except nvml.NVMLError as err:
                logger.info("camel: NVML total energy unavailable (%s); integrating power instead", err)
                return None
        return counters

    def _read_power_w(self) -> float:
        nvml = _pynvml()
        try:
            return sum(nvml.nvmlDeviceGetPowerUsage(h) for h in self.handles) / 1000.0
        except nvml.NVMLError as err:
            raise nvml_error(err, f"nvml power read failed: {err}") from err

    def _read_back_mhz(self, handle, requested_mhz: int) -> float:
        nvml = _pynvml()
        try:
            sm_mhz = float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
        except nvml.NVMLError as err:
            raise nvml_error(err, f"nvml: reading the SM clock back failed: {err}") from err
        if sm_mhz < requested_mhz:
            try:
                reasons = nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
            except nvml.NVMLError:
                reasons = 0
            if int(reasons) & int(nvml.nvmlClocksEventReasonGpuIdle):
                return float(requested_mhz)
        return sm_mhz

    def _reset_locked(self) -> None:
        """Reset every GPU's locked clocks. A failure is one error line: which GPUs, why, the
        clock they stay locked at, and that the record is kept so the next start resets them."""
        errors = self._reset_all()
        self._locked = False
        if not errors:
            self._left_locked = False
            self.record.remove()
            return
        self._left_locked = True  # keep the record: the next start resets what is still locked
        at = "" if self._locked_mhz is None else f" at {self._locked_mhz} MHz"
        if self.record.path is not None:
            then = f"the record {self.record.path} is kept, so the next start resets them (or run `{RESET_BY_HAND}`)"
        elif self.record.shared:
            then = f"another live process's record covers these GPUs; `{RESET_BY_HAND}` resets them"
        else:
            then = f"no record could be written: run `{RESET_BY_HAND}`"
        logger.error("camel: resetting the locked clocks failed (%s); they stay locked%s; %s",
                     "; ".join(errors), at, then)

    def _reset_all(self) -> list[str]:
        """``nvmlDeviceResetGpuLockedClocks`` on every GPU; the failures, one string each."""
        nvml = _pynvml()
        errors = []
        for gpu, handle in zip(self.gpus, self.handles, strict=False):
            try:
                nvml.nvmlDeviceResetGpuLockedClocks(handle)
            except nvml.NVMLError as err:
                errors.append(f"GPU {gpu}: {err}")
        return errors

    def _uuids(self) -> list[str]:
        """The GPUs' UUIDs, sorted (the record's key); the indices as given if NVML has none."""
        nvml = _pynvml()
        try:
            return sorted(_text(nvml.nvmlDeviceGetUUID(h)) for h in self.handles)
        except nvml.NVMLError as err:
            logger.info("camel: NVML gives no GPU UUID (%s); the locked-clocks record is keyed by index", err)
            return sorted(str(g) for g in self.gpus)

    def _record_lock(self) -> None:
        """Write this process's record, unless a live process's record is there."""
        if self.record.shared:
            self.record.load()  # that process may be gone by now
            if self.record.shared:
                return
        self.record.write({"gpus": self.uuids})

    def _recover(self) -> None:
        """Reset the clocks an earlier run locked and did not reset (its process is gone).

        One warning line when they are reset; a live process's record (another engine on these
        GPUs) is not acted on; in ``read_only`` mode nothing is reset, the line says how to.
        """
        earlier = self.record.load()
        if earlier is None:
            return
        gpus = ", ".join(str(g) for g in self.gpus)
        if earlier.alive():
            logger.info("camel: process %d also locks the clocks of GPU %s; its record (%s) is left to it",
                        earlier.pid, gpus, self.record.name)
            return
        if self.read_only:
            logger.warning("camel: GPU clocks of %s may still be locked by an earlier run (pid %d) that was killed; "
                           "read_only: not reset here (`%s` resets them)", gpus, earlier.pid, RESET_BY_HAND)
            return
        errors = self._reset_all()
        if errors:
            self._left_locked = True
            logger.error("camel: GPU clocks of %s were left locked by an earlier run (pid %d) that did not restore "
                         "them; resetting them failed (%s): run `%s`", gpus, earlier.pid, "; ".join(errors),
                         RESET_BY_HAND)
            return
        logger.warning("camel: GPU clocks of %s were left locked by an earlier run (pid %d) that did not restore "
                       "them; reset them (nvmlDeviceResetGpuLockedClocks)", gpus, earlier.pid)
        self.record.remove()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _open(inputs: OpenInputs) -> NvmlDevice:
    import os

    from camel_vllm.core.config import ConfigError
    from camel_vllm.devices.jetson.sysfs import is_jetson

    config = inputs.config
    if is_jetson(config.sysfs_root):
        raise ConfigError("device", "nvml", "this is a Jetson (NVML answers NotSupported there): use device: jetson")
    gpus = list(inputs.gpu_indices) if inputs.gpu_indices is not None else \
        parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    return NvmlDevice(gpus, read_only=config.read_only, sample_hz=config.sample_hz)


DECLARATION = DeviceDeclaration("nvml", "NVIDIA GPUs: locked graphics clocks and the energy counter (nvidia-ml-py)",
                                _open, listing=2)
