"""``device: emulated``: a calibrated Jetson AGX Orin standing in for the silicon.

The emulator keeps a frequency (set instantly, the switch latency is added as a stall to
the next iteration), books modelled energy on a timeline and answers
:meth:`EmulatedDevice.iteration_done` with the extra seconds the adapter must wait:

- ``relative`` (under the real vLLM engine): an iteration that took ``elapsed_s`` of real
  time is stretched by the modelled slowdown of the chosen frequency,
  ``elapsed_s * (t(f) / t(f_max) - 1)`` (0 at f_max);
- ``absolute`` (the discrete-event simulator): the modelled time itself,
  ``max(0, t_model(f, work) - elapsed_s)``; the simulator calls with ``elapsed_s = 0``.

Busy power (modelled, with seeded noise) is booked over ``[now - elapsed_s, now + extra]``
and idle power at the frequency in force elsewhere, so :meth:`energy_j` is monotonic and
already includes the stretch the adapter is about to wait. Every figure is ``emulated``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Sequence

import numpy as np

from camel_vllm.core.events import IterationWork
from camel_vllm.devices.base import DeviceInfo, DevicePermissionError
from camel_vllm.devices.declaration import DeviceDeclaration, OpenInputs
from camel_vllm.devices.emulator.profiles import DeviceProfile, ModelProfile
from camel_vllm.devices.emulator.roofline import PerformanceModel

logger = logging.getLogger("vllm.camel")

TIME_MODES = ("relative", "absolute")


class EmulatedDevice:
    """A modelled GPU: frequency knob, modelled time and power, monotonic energy (J)."""

    def __init__(
        self,
        device_profile: DeviceProfile,
        model_profile: ModelProfile,
        *,
        clock: Callable[[], float] | None = None,
        seed: int = 0,
        time_mode: str = "relative",
        read_only: bool = False,
    ) -> None:
        if time_mode not in TIME_MODES:
            raise ValueError(f"time_mode must be one of {TIME_MODES}, got {time_mode!r}")
        self.profile = device_profile
        self.model = PerformanceModel(device_profile, model_profile)
        self.time_mode = time_mode
        self.read_only = read_only
        self._clock = clock or time.monotonic
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._initial_hz = device_profile.max_frequency_hz
        self._freq_hz = self._initial_hz
        self._pending_stall_s = 0.0
        self._energy_j = 0.0
        self._booked_until_s = self._clock()
        self._busy_power_w = 0.0
        self._busy_until_s = self._booked_until_s
        self.switches = 0
        self._closed = False

    # ------------------------------------------------------------------ protocol
    def info(self) -> DeviceInfo:
        return DeviceInfo(
            kind="emulated",
            name=f"emulated {self.profile.name} / {self.model.model.name}",
            energy_source="emulated",
            energy_method="roofline-model" if not self.model.calibrated else "calibration-table",
            rails=self.profile.rails,
            profile=self.profile.name,
            can_set_frequency=not self.read_only,
            read_only=self.read_only,
            switch_latency_s=self.profile.switch_latency_s,
            extra={
                "model_profile": self.model.model.name,
                "time_mode": self.time_mode,
                "profile_source": self.profile.source,
                "switch_latency_s": self.profile.switch_latency_s,
            },
        )

    def available_frequencies_hz(self) -> Sequence[float]:
        return self.profile.frequencies_hz

    def current_frequency_hz(self) -> float | None:
        with self._lock:
            return self._freq_hz

    def set_frequency_hz(self, freq_hz: float) -> float:
        """Snap to the nearest step (as devfreq does) and apply; the switch stalls the next iteration."""
        if self.read_only:
            raise DevicePermissionError("emulated: read_only is set; the GPU clock is not written")
        step = min(self.profile.frequencies_hz, key=lambda f: abs(f - freq_hz))
        with self._lock:
            self._book_idle(self._clock())
            if step != self._freq_hz:
                self._freq_hz = step
                self._pending_stall_s += self.profile.switch_latency_s
                self.switches += 1
            return self._freq_hz

    def energy_j(self) -> float:
        with self._lock:
            self._book_idle(self._clock())
            return self._energy_j

    def power_w(self) -> float | None:
        with self._lock:
            now = self._clock()
            base = self._busy_power_w if now < self._booked_until_s else self.model.idle_power_w(self._freq_hz)
            return self._noisy(base)

    def iteration_done(self, work: IterationWork, elapsed_s: float) -> float:
        elapsed_s = max(0.0, float(elapsed_s))
        with self._lock:
            now = self._clock()
            freq_hz = self._freq_hz
            if self.time_mode == "relative" and freq_hz == self.profile.max_frequency_hz:
                extra_s = 0.0  # the top clock: no stretch (saves two model evaluations a step)
            elif self.time_mode == "relative":
                t_f = self.model.iteration_time_s(work, freq_hz)
                t_max = self.model.iteration_time_s(work, self.profile.max_frequency_hz)
                extra_s = elapsed_s * (t_f / t_max - 1.0) if t_max > 0 else 0.0
            else:
                extra_s = self.model.iteration_time_s(work, freq_hz) - elapsed_s
            extra_s = max(0.0, extra_s) + self._pending_stall_s
            self._pending_stall_s = 0.0
            start_s = now - elapsed_s
            end_s = now + extra_s
            self._book_idle(start_s)
            power_w = self._noisy(self.model.iteration_power_w(work, freq_hz))
            # Part of [start, now] may already be booked as idle (a reader called energy_j
            # mid-iteration): top it up to busy power. Time already booked busy is not booked twice.
            idle_from_s = max(start_s, self._busy_until_s)
            idle_to_s = min(self._booked_until_s, end_s)
            if idle_to_s > idle_from_s:
                top_up_w = power_w - self.model.idle_power_w(freq_hz)
                self._energy_j += max(0.0, top_up_w) * (idle_to_s - idle_from_s)
            busy_from_s = max(start_s, self._booked_until_s)
            if end_s > busy_from_s:
                self._energy_j += power_w * (end_s - busy_from_s)
                self._booked_until_s = end_s
            self._busy_power_w = power_w
            self._busy_until_s = max(self._busy_until_s, end_s)
            return extra_s

    def restore(self) -> None:
        with self._lock:
            self._book_idle(self._clock())
            self._freq_hz = self._initial_hz

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.restore()

    # ----------------------------------------------------------------- internals
    def _book_idle(self, until_s: float) -> None:
        """Book idle power from the end of the booked timeline up to ``until_s`` (lock held)."""
        if until_s > self._booked_until_s:
            self._energy_j += self.model.idle_power_w(self._freq_hz) * (until_s - self._booked_until_s)
            self._booked_until_s = until_s

    def _noisy(self, power_w: float) -> float:
        sd = self.profile.power_noise
        if sd <= 0:
            return power_w
        return max(0.0, power_w * (1.0 + sd * float(self._rng.standard_normal())))


def _open(inputs: OpenInputs) -> EmulatedDevice:
    from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile

    config = inputs.config
    return EmulatedDevice(load_device_profile(config.device_profile), load_model_profile(config.model_profile),
                          clock=inputs.clock or time.monotonic, seed=config.seed, time_mode=config.emulation_time,
                          read_only=config.read_only)


DECLARATION = DeviceDeclaration("emulated", "a modelled board (device_profile, model_profile): benchmarks without "
                                            "hardware", _open, listing=4)
