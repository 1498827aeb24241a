"""Small deterministic stand-ins for the simulator tests: a linear device and simple policies.

The device models step time = (fixed + per-token) x (max_freq / freq) and power that grows
with frequency, integrated on the simulator's virtual clock (idle power between steps), so
energy depends on the arm the way a real device's does. It is a test fixture, not the
emulator (that lives in camel_vllm.devices and has its own tests).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from camel_vllm.arms import ArmSet
from camel_vllm.context import ContextModel
from camel_vllm.controller import Controller
from camel_vllm.cost import make_cost
from camel_vllm.devices.base import DeviceInfo
from camel_vllm.policies.base import ArmEstimate
from camel_vllm.types import Context, IterationWork

FREQS_HZ = (306e6, 612e6, 930.75e6)


class LinearDevice:
    def __init__(self, clock, *, idle_power_w: float = 5.0) -> None:
        self.clock = clock
        self.freq_hz = FREQS_HZ[-1]
        self.idle_power_w = idle_power_w
        self._energy_j = 0.0
        self._last_s = clock()

    def info(self) -> DeviceInfo:
        return DeviceInfo(kind="emulated", name="linear-test", energy_source="emulated",
                          energy_method="test", can_set_frequency=True)

    def available_frequencies_hz(self) -> Sequence[float]:
        return FREQS_HZ

    def current_frequency_hz(self) -> float | None:
        return self.freq_hz

    def set_frequency_hz(self, freq_hz: float) -> float:
        self.freq_hz = freq_hz
        return freq_hz

    def _accrue_idle(self) -> None:
        now = self.clock()
        if now > self._last_s:
            self._energy_j += self.idle_power_w * (now - self._last_s)
            self._last_s = now

    def energy_j(self) -> float:
        self._accrue_idle()
        return self._energy_j

    def power_w(self) -> float | None:
        return None

    def iteration_done(self, work: IterationWork, elapsed_s: float) -> float:
        self._accrue_idle()
        scale = FREQS_HZ[-1] / self.freq_hz
        duration_s = (0.01 + 0.0005 * work.num_prefill_tokens + 0.0004 * work.num_decode_tokens) * scale
        power_w = self.idle_power_w + 10.0 * (self.freq_hz / FREQS_HZ[-1]) ** 2
        self._energy_j += power_w * duration_s
        self._last_s = self.clock() + duration_s
        return duration_s

    def restore(self) -> None:
        return None

    def close(self) -> None:
        return None


class FixedPolicy:
    """Always the same arm (a static policy for tests)."""

    name = "fixed"

    def __init__(self, index: int) -> None:
        self.index = index

    def select(self, context: Context, available: Sequence[int], current: int | None) -> int:
        return self.index

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        return None

    def estimates(self) -> list[ArmEstimate]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


class CyclePolicy(FixedPolicy):
    """Arms in turn, one per decision: exercises cap changes and draining."""

    name = "cycle"

    def __init__(self) -> None:
        super().__init__(0)
        self.n = 0

    def select(self, context: Context, available: Sequence[int], current: int | None) -> int:
        self.n += 1
        return available[self.n % len(available)]


def make_controller(clock, policy, *, batch_sizes=(2, 4, 8), epoch_iterations: int = 4) -> Controller:
    device = LinearDevice(clock)
    arms = ArmSet.product(FREQS_HZ, batch_sizes)
    return Controller(arms=arms, policy=policy, device=device, cost=make_cost("edp"),
                      context_model=ContextModel(contextual=False, max_batch=max(batch_sizes)),
                      epoch_iterations=epoch_iterations)
