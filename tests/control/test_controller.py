"""The engine-agnostic controller: epochs, energy attribution, crediting, device faults.

The controller is the unit under test; its collaborators implement the Device and Policy
protocols exactly: a scripted policy (below) and the testing package's
:class:`~camel_vllm.testing.fake_device.FakeDevice`, whose energy counter the test advances
by hand and whose clock writes can be refused or capped.
"""

from __future__ import annotations

import math
from typing import Sequence

import pytest

from camel_vllm.control.controller import Controller
from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import LogEDPCost
from camel_vllm.core.events import Context, EngineSnapshot, FinishedRequest, IterationWork
from camel_vllm.devices.base import NullDevice
from camel_vllm.policies.base import Policy
from camel_vllm.testing.fake_device import FakeDevice

FREQS_HZ = (306e6, 612e6, 930.75e6)


class ScriptedPolicy(Policy):
    """Chooses the arms of ``script`` in turn (the last one forever); records observations."""

    name = "scripted"

    def __init__(self, script: Sequence[int]) -> None:
        self.script = list(script)
        self.calls: list[tuple[Context, tuple[int, ...], int | None]] = []
        self.observed: list[tuple[int, Context, float, float]] = []

    def select(self, decision):
        context, available, current = decision.context, decision.available, decision.current
        self.calls.append((context, tuple(available), current))
        wanted = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return wanted if wanted in available else available[-1]

    def observe(self, arm_index, context, cost, weight=1.0):
        self.observed.append((arm_index, context, cost, weight))

    def estimates(self):
        return []

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def make(script=(0,), device=None, batch_sizes=(4, 8), epoch_iterations=2, **kwargs):
    device = device or FakeDevice(FREQS_HZ)
    arms = ArmSet.product(device.available_frequencies_hz() or [None], batch_sizes)
    policy = ScriptedPolicy(script)
    controller = Controller(
        arms=arms, policy=policy, device=device, cost=LogEDPCost(),
        context_model=ContextModel(contextual=False, max_batch=max(batch_sizes)),
        epoch_iterations=epoch_iterations, **kwargs,
    )
    return controller, policy, device


def snap(now_s, running=0, waiting=0):
    return EngineSnapshot(now_s=now_s, num_running=running, num_waiting=waiting)


def work(tokens: dict[str, int], prefill: int = 0) -> IterationWork:
    total = sum(tokens.values())
    return IterationWork(tokens_by_request=tokens, num_prefill_tokens=prefill, num_decode_tokens=total - prefill)


def finished(request_id, arrival_s=0.0, finish_s=2.0):
    return FinishedRequest(request_id=request_id, arrival_s=arrival_s, finish_s=finish_s,
                           prompt_tokens=3, output_tokens=2)


def test_a_policy_without_the_base_class_is_refused_in_one_line():
    # ScriptedPolicy's methods, without the base class that gives the hooks
    methods = ("name", "__init__", "select", "observe", "estimates", "state_dict", "load_state_dict")
    duck_policy = type("DuckPolicy", (), {m: vars(ScriptedPolicy)[m] for m in methods})
    device = FakeDevice(FREQS_HZ)
    with pytest.raises(TypeError, match="DuckPolicy does not derive from camel_vllm.policies.base.Policy"):
        Controller(arms=ArmSet.product(FREQS_HZ, (4, 8)), policy=duck_policy((0,)), device=device, cost=LogEDPCost(),
                   context_model=ContextModel(contextual=False, max_batch=8))


def test_the_base_hooks_do_nothing_and_a_policy_without_hooks_runs():
    controller, policy, _ = make(script=(0, 1))
    assert policy.model_readout() is None
    controller.request_arrived("a", 0.0, 3)
    for step in range(4):  # decisions, maintain, iterations: every hook called, none defined
        controller.begin_iteration(snap(0.1 * step, running=1))
        controller.end_iteration(0.1 * step + 0.05, work({"a": 1}))
    assert controller.request_finished(finished("a", finish_s=0.4)) is not None
    assert len(policy.calls) == 2 and policy.observed


def test_arm_is_held_for_an_epoch_then_chosen_again():
    controller, policy, device = make(script=[1, 4, 2], epoch_iterations=3)
    arms = [controller.begin_iteration(snap(i)) for i in range(7)]
    for i in range(7):
        controller.end_iteration(i + 0.5, work({}))
    indices = [controller.arms.index(a) for a in arms]
    assert indices == [1, 1, 1, 4, 4, 4, 2]
    assert controller.decisions == 3
    assert device.writes == [controller.arms[1].freq_hz, controller.arms[4].freq_hz, controller.arms[2].freq_hz]
    assert [call[2] for call in policy.calls] == [None, 1, 4]  # the arm in force is passed


def test_epoch_time_bound_ends_an_epoch_early():
    controller, policy, _ = make(script=[0, 1], epoch_iterations=100, epoch_s=1.0)
    controller.begin_iteration(snap(0.0))
    controller.end_iteration(0.1, work({}))
    controller.begin_iteration(snap(0.5))
    controller.end_iteration(0.6, work({}))
    assert controller.decisions == 1
    controller.begin_iteration(snap(1.2))
    assert controller.decisions == 2 and controller.current_index == 1


def test_decision_due_predicts_exactly_the_deciding_iterations():
    controller, _, _ = make(script=[0, 1, 0, 1], epoch_iterations=3, epoch_s=10.0)
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 20.0, 21.0]
    due, decided = [], []
    for now_s in times:
        due.append(controller.decision_due(now_s))
        before = controller.decisions
        controller.begin_iteration(snap(now_s))
        controller.end_iteration(now_s + 0.5, work({}))
        decided.append(controller.decisions > before)
    assert due == decided
    # first iteration, after 3 iterations, and at 20 s when the 10 s bound ends the epoch early
    assert decided == [True, False, False, True, False, False, True, False]


def test_energy_split_by_tokens_and_edp():
    controller, policy, device = make(script=[0])
    controller.request_arrived("a", 0.0, 3)
    controller.request_arrived("b", 0.0, 1)
    controller.begin_iteration(snap(0.0))
    device.energy = 8.0
    controller.end_iteration(0.1, work({"a": 3, "b": 1}, prefill=4))  # a: 6 J, b: 2 J
    controller.begin_iteration(snap(0.1))
    device.energy = 12.0
    controller.end_iteration(0.2, work({"a": 1, "b": 1}))  # 2 J each
    out_a = controller.request_finished(finished("a", 0.0, 2.0))
    out_b = controller.request_finished(finished("b", 0.0, 4.0))
    assert out_a.energy_j == pytest.approx(8.0) and out_b.energy_j == pytest.approx(4.0)
    assert out_a.edp_js == pytest.approx(16.0) and out_b.edp_js == pytest.approx(16.0)
    assert out_a.cost == pytest.approx(math.log(16.0))
    assert controller.energy_attributed_j == pytest.approx(12.0)
    assert [(o[0], o[3]) for o in policy.observed] == [(0, 1.0), (0, 1.0)]


def serve_over_two_epochs(controller):
    """Request "r": 3 prefill tokens in the first epoch, 1 decode token in the second."""
    controller.request_arrived("r", 0.0, 3)
    controller.begin_iteration(snap(0.0))
    controller.end_iteration(0.1, work({"r": 3}, prefill=3))
    controller.begin_iteration(snap(0.1))
    controller.end_iteration(0.2, work({"r": 1}))
    return controller.request_finished(finished("r"))


def test_request_over_two_arms_credits_each_by_token_share():
    controller, policy, device = make(script=[1, 3], epoch_iterations=1)
    outcome = serve_over_two_epochs(controller)
    shares = {arm: share for (_, arm), share in outcome.arm_shares.items()}
    assert shares == {1: pytest.approx(0.75), 3: pytest.approx(0.25)}
    assert sorted((o[0], o[3]) for o in policy.observed) == [(1, pytest.approx(0.75)), (3, pytest.approx(0.25))]
    assert len({o[2] for o in policy.observed}) == 1  # one cost, two weights


def test_observe_budget_hands_credits_over_in_later_iterations():
    controller, policy, device = make(script=[1, 3, 1, 3, 1, 3], epoch_iterations=1, observe_budget=1)
    outcome = serve_over_two_epochs(controller)
    assert outcome is not None and policy.observed == []  # queued, not lost
    controller.begin_iteration(snap(0.2))  # one credit per iteration
    assert [(o[0], o[3]) for o in policy.observed] == [(1, pytest.approx(0.75))]
    controller.end_iteration(0.3, work({}))
    controller.request_arrived("s", 0.3, 1)
    controller.begin_iteration(snap(0.3))
    controller.end_iteration(0.4, work({"s": 1}))
    controller.request_finished(finished("s", 0.3, 0.4))
    assert len(policy.observed) == 2
    controller.close()  # the rest is credited before the state is saved
    assert sorted((o[0], round(o[3], 2)) for o in policy.observed) == [(1, 0.75), (3, 0.25), (3, 1.0)]


def test_idle_energy_is_not_attributed():
    controller, policy, device = make(script=[0])
    controller.request_arrived("r", 0.0, 1)
    controller.begin_iteration(snap(0.0))
    device.energy = 1.0
    controller.end_iteration(0.1, work({"r": 1}))
    device.energy = 51.0  # 50 J burnt while the engine was idle
    controller.begin_iteration(snap(10.0))  # idle before: the mark moves to now
    device.energy = 53.0
    controller.end_iteration(10.1, work({"r": 1}))
    outcome = controller.request_finished(finished("r", 0.0, 10.1))
    assert outcome.energy_j == pytest.approx(3.0)
    assert controller.energy_attributed_j == pytest.approx(3.0)


def test_a_step_that_ran_no_tokens_is_not_reported_to_the_policy():
    """vLLM runs one empty step as the engine drains; its few ms would read as a fast clock."""
    controller, policy, device = make(script=[0])
    seen: list[IterationWork] = []
    policy.observe_iteration = lambda arm, step, duration_s, energy_j=None, **kw: seen.append(step)  # type: ignore[method-assign]
    controller.request_arrived("r", 0.0, 1)
    controller.begin_iteration(snap(0.0, waiting=1))
    device.energy = 1.0
    controller.end_iteration(0.1, work({"r": 1}, prefill=1))
    controller.begin_iteration(snap(0.2))
    device.energy = 1.1
    controller.end_iteration(0.203, IterationWork({}, 0, 0))
    assert [step.num_tokens for step in seen] == [1]
    assert controller.energy_attributed_j == pytest.approx(1.0)


def test_aborted_and_unserved_requests_credit_nothing():
    controller, policy, device = make(script=[0])
    controller.request_arrived("gone", 0.0, 1)
    controller.request_arrived("never", 0.0, 1)
    controller.begin_iteration(snap(0.0))
    device.energy = 2.0
    controller.end_iteration(0.1, work({"gone": 1}))
    controller.request_aborted("gone")
    assert controller.request_finished(finished("gone")) is None
    assert controller.request_finished(finished("never")) is None
    assert policy.observed == [] and controller.tracked_requests == 0


def test_permission_error_falls_back_to_batch_only():
    device = FakeDevice(FREQS_HZ, refuse="permission")
    controller, policy, _ = make(script=[0], device=device)
    arm = controller.begin_iteration(snap(0.0))
    assert controller.batch_only
    available = controller.arms.available_indices()
    assert {controller.arms[i].freq_hz for i in available} == {max(FREQS_HZ)}  # the clock in force
    assert controller.current_index in available and arm.freq_hz == max(FREQS_HZ)
    assert len(device.writes) == 1  # never tries to write again
    for i in range(1, 6):
        controller.begin_iteration(snap(i))
    assert len(device.writes) == 1


def test_frequency_mismatch_disables_that_frequency():
    device = FakeDevice(FREQS_HZ, cap_hz=612e6)  # the device runs at most 612 MHz
    device.freq_hz = 306e6
    controller, policy, _ = make(script=[4, 0], device=device, epoch_iterations=1)
    first = controller.begin_iteration(snap(0.0))  # arm 4 = 930.75 MHz: read back 612
    available_freqs = {controller.arms[i].freq_hz for i in controller.arms.available_indices()}
    assert available_freqs == {306e6, 612e6}
    assert device.writes == [930.75e6, 306e6]  # refused arm, then the policy's next choice
    assert first.freq_hz == 306e6 and controller.applied_freq_hz == 306e6


def test_a_refused_prefill_clock_is_asked_for_once():
    """A prefill clock the device caps is switched off and never asked for again on later steps."""
    device = FakeDevice(FREQS_HZ, cap_hz=612e6)  # the device runs at most 612 MHz
    device.freq_hz = 306e6
    arms = ArmSet.product(FREQS_HZ, (4, 8), prefill_freqs_hz=[930.75e6])
    prefill_arm = arms.index(next(a for a in arms if a.freq_hz == 306e6 and a.prefill_freq_hz == 930.75e6))
    controller = Controller(arms=arms, policy=ScriptedPolicy([prefill_arm]), device=device, cost=LogEDPCost(),
                            context_model=ContextModel(contextual=False, max_batch=8), epoch_iterations=100)
    assert controller.per_step_clock
    prefill = work({"a": 8}, prefill=8)
    for i in range(5):
        controller.begin_iteration(snap(float(i), running=1))
        controller.step_frequency(prefill)
        controller.end_iteration(i + 0.5, prefill)
    assert device.writes.count(930.75e6) == 1  # asked once, read back 612 MHz, never asked again
    assert controller.applied_freq_hz == 306e6 and controller.refused_freqs_hz == {930.75e6}
    assert not controller.arms.available[prefill_arm]


def test_failed_write_disables_only_that_frequency():
    device = FakeDevice(FREQS_HZ, refuse="error")
    controller, policy, _ = make(script=[0, 2], device=device)
    controller.begin_iteration(snap(0.0))
    available_freqs = {controller.arms[i].freq_hz for i in controller.arms.available_indices()}
    assert 306e6 not in available_freqs and not controller.batch_only


def test_close_restores_once_and_null_device_gives_batch_only():
    controller, _, device = make(script=[0])
    controller.close()
    controller.close()
    assert device.closed == 1
    arms = ArmSet.product([None], (4, 8))
    null = Controller(arms=arms, policy=ScriptedPolicy([1]), device=NullDevice(), cost=LogEDPCost(),
                      context_model=ContextModel(contextual=False, max_batch=8), batch_only=True)
    assert null.begin_iteration(snap(0.0)).max_batch == 8
    assert null.end_iteration(0.1, work({"x": 1})) == 0.0


def test_the_controller_and_the_config_share_the_epoch_default():
    controller = Controller(arms=ArmSet.product([None], (4,)), policy=ScriptedPolicy([0]), device=NullDevice(),
                            cost=LogEDPCost(), context_model=ContextModel(contextual=False, max_batch=4),
                            batch_only=True)
    assert controller.epoch_iterations == CamelConfig().epoch_iterations == 64
