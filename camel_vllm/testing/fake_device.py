"""One configurable fake of the :class:`~camel_vllm.devices.base.Device` protocol.

For the tests and benchmarks that need a device whose every answer is known: the
controller's tests (a counter set by hand, refused or capped clock writes), the simulator's
(a step time and power that depend on the clock, integrated on a virtual clock), the metrics'
(refused writes, failing power reads), the configuration's (a list of steps, writable or
not) and the overhead benchmark's (reads that cost nothing). It is not the emulator
(:mod:`camel_vllm.devices.emulator.device`, calibrated on real boards) and not a sysfs tree
(:mod:`camel_vllm.testing.fake_sysfs`).

Energy (J) is ``energy`` (set it by hand), plus ``energy_per_read_j`` at each
``energy_j()`` call, plus, with a ``clock``, ``idle_power_w`` over the clock's time and what
``step`` says each iteration costs. Frequencies are in Hz.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

from camel_vllm.core.events import IterationWork
from camel_vllm.devices.base import DeviceError, DeviceInfo, DevicePermissionError, EnergySource

#: Three steps of the AGX Orin 32GB grid (Hz): lowest, middle, highest.
FAKE_FREQS_HZ: tuple[float, ...] = (306e6, 612e6, 930.75e6)

#: ``step(work, freq_hz) -> (duration_s, power_w)``: one iteration on the modelled device.
StepModel = Callable[[IterationWork, float], tuple[float, float]]
Refusal = Literal["permission", "error"]


class FakeDevice:
    """A scripted device: known steps, a hand-set or modelled energy counter, chosen faults.

    ``refuse``: every ``set_frequency_hz`` raises :class:`DevicePermissionError`
    (``"permission"``) or :class:`DeviceError` (``"error"``); ``cap_hz``: writes succeed but
    the clock reads back at most this (a power-mode cap); ``power_error``: ``power_w()``
    raises it (a failing sensor), else returns None (no power sensor). Every requested frequency
    is kept in ``writes``; ``restored`` and ``closed`` count those calls.
    """

    def __init__(
        self,
        freqs_hz: Sequence[float] = FAKE_FREQS_HZ,
        *,
        kind: str = "fake",
        name: str = "fake",
        energy_source: EnergySource = "measured",
        energy_method: str = "test",
        can_set_frequency: bool = True,
        refuse: Refusal | None = None,
        cap_hz: float | None = None,
        energy_per_read_j: float = 0.0,
        clock: Callable[[], float] | None = None,
        idle_power_w: float = 0.0,
        step: StepModel | None = None,
        power_error: Exception | None = None,
    ) -> None:
        self.freqs_hz = tuple(freqs_hz)
        self.freq_hz: float | None = max(self.freqs_hz) if self.freqs_hz else None
        self.refuse = refuse
        self.cap_hz = cap_hz
        self.energy = 0.0
        self.energy_per_read_j = energy_per_read_j
        self.clock = clock
        self.idle_power_w = idle_power_w
        self.step = step
        self.power_error = power_error
        self.writes: list[float] = []
        self.restored = 0
        self.closed = 0
        self._last_s = clock() if clock is not None else 0.0
        # built once: the overhead benchmark times the controller, not the device
        self._info = DeviceInfo(kind=kind, name=name, energy_source=energy_source, energy_method=energy_method,
                                can_set_frequency=can_set_frequency)

    # ------------------------------------------------------------------ protocol
    def info(self) -> DeviceInfo:
        return self._info

    def available_frequencies_hz(self) -> Sequence[float]:
        return self.freqs_hz

    def current_frequency_hz(self) -> float | None:
        return self.freq_hz

    def set_frequency_hz(self, freq_hz: float) -> float:
        self.writes.append(freq_hz)
        if self.refuse == "permission":
            raise DevicePermissionError(f"{self._info.kind}: writing the clock needs root")
        if self.refuse == "error":
            raise DeviceError(f"{self._info.kind}: writing the clock failed (EIO)")
        self.freq_hz = freq_hz if self.cap_hz is None else min(freq_hz, self.cap_hz)
        return self.freq_hz

    def energy_j(self) -> float:
        self._accrue_idle()
        self.energy += self.energy_per_read_j
        return self.energy

    def power_w(self) -> float | None:
        if self.power_error is not None:
            raise self.power_error
        return None

    def iteration_done(self, work: IterationWork, elapsed_s: float) -> float:
        """With a ``step`` model: the iteration's modelled duration (its energy is added)."""
        if self.step is None or self.clock is None:
            return 0.0
        self._accrue_idle()
        assert self.freq_hz is not None
        duration_s, power_w = self.step(work, self.freq_hz)
        self.energy += power_w * duration_s
        self._last_s = self.clock() + duration_s
        return duration_s

    def restore(self) -> None:
        self.restored += 1

    def close(self) -> None:
        self.closed += 1
        self.restore()

    # ----------------------------------------------------------------- internals
    def _accrue_idle(self) -> None:
        if self.clock is None:
            return
        now_s = self.clock()
        if now_s > self._last_s:
            self.energy += self.idle_power_w * (now_s - self._last_s)
            self._last_s = now_s
