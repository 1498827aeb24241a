"""Small deterministic stand-ins for the simulator tests: a linear device and simple policies.

The device (the testing package's :class:`~camel_vllm.testing.fake_device.FakeDevice` with
:func:`linear_step`) models step time = (fixed + per-token) x (max_freq / freq) and power
that grows with frequency, integrated on the simulator's virtual clock (idle power between
steps), so energy depends on the arm the way a real device's does. It is a test fixture, not
the emulator (that lives in camel_vllm.devices and has its own tests).
"""

from __future__ import annotations

from typing import Any, Mapping

from camel_vllm.control.controller import Controller
from camel_vllm.core.arms import ArmSet
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import make_cost
from camel_vllm.core.events import Context, IterationWork
from camel_vllm.policies.base import ArmEstimate, Policy
from camel_vllm.policies.decision import DecisionInput
from camel_vllm.testing.fake_device import FakeDevice

FREQS_HZ = (306e6, 612e6, 930.75e6)
#: Power between iterations (W).
IDLE_POWER_W = 5.0


def linear_step(work: IterationWork, freq_hz: float, *, idle_power_w: float = IDLE_POWER_W) -> tuple[float, float]:
    """(duration s, power W) of one iteration: time scales with 1 / frequency, power with frequency^2."""
    scale = FREQS_HZ[-1] / freq_hz
    duration_s = (0.01 + 0.0005 * work.num_prefill_tokens + 0.0004 * work.num_decode_tokens) * scale
    power_w = idle_power_w + 10.0 * (freq_hz / FREQS_HZ[-1]) ** 2
    return duration_s, power_w


def linear_device(clock) -> FakeDevice:
    """The testing package's fake device with :func:`linear_step` on the simulator's clock."""
    return FakeDevice(FREQS_HZ, kind="emulated", name="linear-test", energy_source="emulated", clock=clock,
                      idle_power_w=IDLE_POWER_W, step=linear_step)


class FixedPolicy(Policy):
    """Always the same arm (a static policy for tests)."""

    name = "fixed"

    def __init__(self, index: int) -> None:
        self.index = index

    def select(self, decision: DecisionInput) -> int:
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

    def select(self, decision: DecisionInput) -> int:
        available = decision.available
        self.n += 1
        return available[self.n % len(available)]


def make_controller(clock, policy, *, batch_sizes=(2, 4, 8), epoch_iterations: int = 4) -> Controller:
    device = linear_device(clock)
    arms = ArmSet.product(FREQS_HZ, batch_sizes)
    return Controller(arms=arms, policy=policy, device=device, cost=make_cost("edp"),
                      context_model=ContextModel(contextual=False, max_batch=max(batch_sizes)),
                      epoch_iterations=epoch_iterations)
