"""The device protocol: one small interface every backend implements.

A device exposes the GPU clock as a knob and energy as a monotonic counter. Backends:
Jetson sysfs (devfreq + INA3221), NVML, jetson-stats (power only), the calibrated emulator,
and ``none`` (no knob, no sensor). The controller sees only this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, runtime_checkable

from camel_vllm.core.errors import CamelError
from camel_vllm.core.events import IterationWork
from camel_vllm.devices.declaration import DeviceDeclaration

EnergySource = Literal["measured", "emulated", "none"]


class DeviceError(CamelError, RuntimeError):
    """A device operation failed in a way the caller should report (one clear line)."""


class DevicePermissionError(DeviceError):
    """Writing a clock needs privileges the process lacks; callers fall back to batch-only arms."""


@dataclass(frozen=True)
class DeviceInfo:
    """A description of a device for logs, metrics and ``camel-vllm probe``.

    ``energy_source`` says where joules come from: ``measured`` (a hardware counter or
    integrated sensor power), ``emulated`` (the calibrated model) or ``none``.
    ``energy_method`` names the exact source, e.g. ``"nvml-total-energy"``,
    ``"ina3221-integrated"``, ``"roofline-model"``.
    """

    kind: str
    name: str
    energy_source: EnergySource
    energy_method: str
    rails: tuple[str, ...] = ()
    profile: str | None = None
    can_set_frequency: bool = False
    read_only: bool = False
    extra: dict[str, object] = field(default_factory=dict)
    #: Seconds a clock change takes to take effect (published for the device kind; the
    #: emulator's profile value): what the clock following each step's work costs per switch.
    switch_latency_s: float = 0.0

    @property
    def emulated(self) -> bool:
        return self.energy_source == "emulated"


@dataclass(frozen=True)
class EnergyReading:
    """The energy counter (J) read together with how often it stopped being a measurement.

    ``gaps`` is monotonic: it counts every sensor read that failed and every reading that
    closed such a gap (the energy over a gap is interpolated, or arrives in one lump when the
    sensor comes back). The energy between two readings whose ``gaps`` differ was not
    measured where it was spent. ``failing`` counts the episodes in which reads kept failing
    (each reported once, see :class:`~camel_vllm.devices.sampler.PowerSampler`).
    """

    energy_j: float
    gaps: int = 0
    failing: int = 0


def read_energy(device: "Device") -> EnergyReading:
    """``device.energy_reading()`` when the backend has one (counter and gaps read together),
    else ``energy_j()`` with no gaps (the emulator: every joule is its model's)."""
    reading = getattr(device, "energy_reading", None)
    return reading() if reading is not None else EnergyReading(device.energy_j())


@runtime_checkable
class Device(Protocol):
    """A GPU whose clock can be set and whose energy can be read.

    All frequencies are in Hz, energy in J, power in W. ``set_frequency_hz`` returns the
    frequency in force after read-back (it may differ from the request: a power-mode cap
    or thermal throttling is an observation, not an error).
    """

    def info(self) -> DeviceInfo: ...

    def available_frequencies_hz(self) -> Sequence[float]: ...

    def current_frequency_hz(self) -> float | None: ...

    def set_frequency_hz(self, freq_hz: float) -> float: ...

    def energy_j(self) -> float:
        """Monotonic energy counter since the device object was opened, in joules.

        A backend whose sensor can fail also offers ``energy_reading() -> EnergyReading``
        (optional, looked up by :func:`read_energy`), so a caller knows which intervals
        were not measured."""
        ...

    def power_w(self) -> float | None: ...

    def iteration_done(self, work: IterationWork, elapsed_s: float) -> float:
        """Tell the device an iteration just did ``work`` in ``elapsed_s`` seconds.

        Returns how many seconds longer the iteration would have lasted on the device being
        modelled (the adapter waits that long). Real hardware returns 0.0; the emulator
        returns the modelled slowdown of the chosen frequency.
        """
        ...

    def restore(self) -> None:
        """Put the clock settings back to what was found when the device was opened.

        Runs at exit and from signal handlers, so it does not raise: a failure is one error
        line saying what the clock is left at and what puts it back (the next start, from
        the run record, or a command by hand)."""
        ...

    def close(self) -> None:
        """Restore and release resources (threads, handles). Idempotent."""
        ...


class NullDevice:
    """``device: none``: no clock knob and no sensor; arms vary the batch cap only."""

    def info(self) -> DeviceInfo:
        return DeviceInfo(kind="none", name="none", energy_source="none", energy_method="none")

    def available_frequencies_hz(self) -> Sequence[float]:
        return ()

    def current_frequency_hz(self) -> float | None:
        return None

    def set_frequency_hz(self, freq_hz: float) -> float:
        raise DeviceError("device 'none' has no frequency to set")

    def energy_j(self) -> float:
        return 0.0

    def power_w(self) -> float | None:
        return None

    def iteration_done(self, work: IterationWork, elapsed_s: float) -> float:
        return 0.0

    def restore(self) -> None:
        return None

    def close(self) -> None:
        return None


DECLARATION = DeviceDeclaration("none", "no clock knob, no energy: batch-only arms", lambda inputs: NullDevice(),
                                listing=5)
