"""A policy that raises from a hook never takes the engine down (issue 23, item 1).

The controller is under test; the policy is a real :class:`Policy` subclass that plays arms in
turn and raises ``ZeroDivisionError`` from one chosen hook on a chosen call (as the camel policy
did four requests into a run from a learned state whose prompt count was negative). The run
goes on: one error line, ``camel_device_errors_total{kind="policy"}`` counts it, the default arm
is played from the next decision on, the broken policy is never called again, and energy
attribution and request accounting carry on.
"""

from __future__ import annotations

import logging

import pytest

from camel_vllm.control.controller import Controller, DefaultArmPolicy
from camel_vllm.core.arms import ArmSet
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import LogEDPCost
from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork
from camel_vllm.policies.declaration import Cadence
from camel_vllm.policies.base import Policy
from camel_vllm.telemetry.metrics import MetricsExporter
from camel_vllm.testing.fake_device import FakeDevice

FREQS_HZ = (306e6, 612e6, 930.75e6)
HOOKS = ("observe_arrival", "select", "maintain", "observe_iteration", "observe",
         "observe_outcome")


class BrokenPolicy(Policy):
    """Plays the slowest arms in turn; raises from ``hook`` on its ``fail_on``-th call. Counts
    every call it gets after it failed (the controller must make none)."""

    name = "broken"

    def __init__(self, hook: str, fail_on: int = 5, *, wrong_arm: bool = False) -> None:
        self.hook, self.fail_on, self.wrong_arm = hook, fail_on, wrong_arm
        self.calls: dict[str, int] = {}
        self.failed = False
        self.calls_after_failure = 0

    def _call(self, hook: str) -> None:
        if self.failed:
            self.calls_after_failure += 1
        self.calls[hook] = self.calls.get(hook, 0) + 1
        if hook == self.hook and self.calls[hook] == self.fail_on:
            self.failed = True
            _ = 1 / 0

    def select(self, decision):
        available = decision.available
        self._call("select")
        if self.wrong_arm and self.calls["select"] >= self.fail_on:
            self.failed = True
            return 99
        return available[self.calls["select"] % 2]  # 306 MHz arms: never the default

    def observe(self, arm_index, context, cost, weight=1.0):
        self._call("observe")

    def observe_arrival(self, now_s, prompt_tokens):
        self._call("observe_arrival")

    def observe_iteration(self, arm_index, work, duration_s, energy_j=None):
        self._call("observe_iteration")

    def observe_outcome(self, outcome):
        self._call("observe_outcome")

    def maintain(self, deadline):
        self._call("maintain")

    def estimates(self):
        return []

    def state_dict(self):
        self._call("state_dict")
        return {"kind": "broken"}

    def load_state_dict(self, state):
        pass


class SavingStore:
    """A learned-state store that counts saves (the controller's collaborator, not under test)."""

    load_outcome = None

    def __init__(self) -> None:
        self.saved = 0

    def save(self, policy: Policy) -> None:
        policy.state_dict()
        self.saved += 1


def _controller(policy: Policy, device: FakeDevice, **kwargs) -> Controller:
    arms = ArmSet.product(FREQS_HZ, (4, 8))
    return Controller(arms=arms, policy=policy, device=device, cost=LogEDPCost(),
                      cadence=Cadence(maintain_each_iteration=True),  # so maintain() is called on every iteration
                      context_model=ContextModel(contextual=False, max_batch=8), epoch_iterations=2, **kwargs)


def _serve(controller: Controller, device: FakeDevice, requests: int) -> list:
    """One request at a time, two iterations each, 1 J per iteration."""
    outcomes = []
    now_s = 0.0
    for n in range(requests):
        rid = f"r{n}"
        controller.request_arrived(rid, now_s, 8)
        for tokens in (8, 1):
            controller.begin_iteration(EngineSnapshot(now_s, 1, 0, 0))
            now_s += 0.1
            device.energy += 1.0
            controller.end_iteration(now_s, IterationWork({rid: tokens}, 8 if tokens == 8 else 0,
                                                          1 if tokens == 1 else 0))
        outcomes.append(controller.request_finished(FinishedRequest(rid, now_s - 0.2, now_s, 8, 1, now_s - 0.2)))
    return outcomes


def _policy_errors(exporter: MetricsExporter) -> float | None:
    return exporter.registry.get_sample_value("camel_device_errors_total", {"kind": "policy"})


@pytest.mark.parametrize("hook", HOOKS)
def test_a_policy_that_raises_is_one_line_then_the_default_arm(hook: str, caplog) -> None:
    policy, device = BrokenPolicy(hook), FakeDevice(FREQS_HZ)
    controller = _controller(policy, device)
    exporter = MetricsExporter(controller)
    controller.listeners.append(exporter)
    assert _policy_errors(exporter) == 0  # pre-created: rate() sees the first
    with caplog.at_level(logging.INFO, logger="vllm.camel"):
        outcomes = _serve(controller, device, 12)
    assert policy.failed and policy.calls_after_failure == 0
    assert controller.failed_policy is policy and isinstance(controller.policy, DefaultArmPolicy)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == [f"camel: policy broken failed in {hook}: ZeroDivisionError: division by zero; "
                     "serving with the default arm from now on"]
    assert _policy_errors(exporter) == 1
    # From the next decision on, the default arm: the top clock with the largest cap.
    default = controller.arms.default_index()
    assert controller.current_index == default and device.freq_hz == max(FREQS_HZ)
    assert controller.arms[default].max_batch == 8 and controller.batch_cap == 8
    # Every request was still served, attributed its energy and accounted.
    assert all(o is not None for o in outcomes) and controller.updates == 12
    assert [o.energy_j for o in outcomes] == pytest.approx([2.0] * 12)
    assert controller.energy_attributed_j == pytest.approx(24.0)
    assert sum(sample.value for family in exporter.registry.collect() for sample in family.samples
               if sample.name == "camel_arm_requests_total") == pytest.approx(12)
    controller.close()
    assert device.closed == 1


def test_an_unavailable_arm_from_select_is_a_policy_failure_too(caplog) -> None:
    policy, device = BrokenPolicy("none", fail_on=3, wrong_arm=True), FakeDevice(FREQS_HZ)
    controller = _controller(policy, device)
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        _serve(controller, device, 6)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith(
        "camel: policy broken failed in select: RuntimeError: chose arm 99, which is not among the available arms ")
    assert controller.current_index == controller.arms.default_index() and policy.calls_after_failure == 0


def test_after_a_failure_the_learned_state_file_is_left_as_it_was(caplog) -> None:
    store = SavingStore()
    policy, device = BrokenPolicy("observe_outcome", fail_on=4), FakeDevice(FREQS_HZ)
    controller = _controller(policy, device, state_store=store, state_save_every=2)
    _serve(controller, device, 8)
    assert store.saved == 1  # after request 2; at 4 the policy failed: no save at 4, 6, 8 nor at close
    controller.close()
    assert store.saved == 1 and device.closed == 1


def test_a_state_dict_that_raises_at_close_still_restores_the_device(caplog) -> None:
    policy, device = BrokenPolicy("state_dict", fail_on=1), FakeDevice(FREQS_HZ)
    controller = _controller(policy, device, state_store=SavingStore())
    _serve(controller, device, 2)
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        controller.close()  # does not raise
    assert device.closed == 1
    assert [r.getMessage() for r in caplog.records] == [
        "camel: policy broken failed in state_dict: ZeroDivisionError: division by zero; "
        "serving with the default arm from now on"]
