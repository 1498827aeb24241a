"""The energy ledger (lazy per-request attribution) against a per-step reference.

:class:`ReferenceLedger` charges every request of every step one by one, as the controller
did before the ledger; random step sequences (requests joining, leaving, absent, prefill chunks,
speculative steps, tokens of 0, slot changes, unmeasured steps, requests finished or aborted
while a step was in flight, ids reused) must leave both with the same traces, within 1e-9.
"""

from __future__ import annotations

import random
from typing import Mapping

import pytest

from camel_vllm.control import ledger as ledger_module
from camel_vllm.control.controller import Controller, DefaultArmPolicy
from camel_vllm.control.ledger import EnergyLedger, RequestTrace
from camel_vllm.core.arms import ArmSet
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import LogEDPCost
from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork
from camel_vllm.devices.base import EnergyReading
from camel_vllm.testing.fake_device import FakeDevice


REL = 1e-9


class ReferenceLedger:
    """Per-step attribution, request by request (the controller's loop before the ledger)."""

    def __init__(self) -> None:
        self.traces: dict[str, RequestTrace] = {}

    def __len__(self) -> int:
        return len(self.traces)

    def add(self, request_id: str) -> None:
        self.traces.setdefault(request_id, RequestTrace())

    def pop(self, request_id: str) -> RequestTrace | None:
        return self.traces.pop(request_id, None)

    def charge(self, tokens: Mapping[str, int], begin_s: float, slot: int, per_token_j: float,
               inv_tokens: float, measured: bool, decode_only: bool = False) -> int:
        charged = 0
        for request_id, count in tokens.items():
            trace = self.traces.get(request_id)
            if trace is None:
                continue
            if trace.first_s is None:
                trace.first_s = begin_s
            trace.energy_j += per_token_j * count
            trace.iteration_shares += count * inv_tokens
            if decode_only and count == 1:
                trace.decode_shares += inv_tokens
                trace.decode_steps += 1
            if not measured:
                trace.unmeasured = True
            trace.tokens_by_slot[slot] = trace.tokens_by_slot.get(slot, 0) + count
            charged += count
        return charged


def assert_same(got: RequestTrace | None, want: RequestTrace | None) -> None:
    if want is None:
        assert got is None
        return
    assert got is not None
    assert got.energy_j == pytest.approx(want.energy_j, rel=REL, abs=1e-12)
    assert got.iteration_shares == pytest.approx(want.iteration_shares, rel=REL, abs=1e-12)
    assert got.decode_shares == pytest.approx(want.decode_shares, rel=REL, abs=1e-12)
    assert got.decode_steps == want.decode_steps
    assert list(got.tokens_by_slot.items()) == list(want.tokens_by_slot.items())  # order too
    assert (got.first_s, got.unmeasured) == (want.first_s, want.unmeasured)


def random_steps(seed: int, steps: int):
    """(events, tokens, begin_s, slot, per_token_j, measured, decode_only) per step; events:
    ("add"|"pop", id); decode_only: no prefill chunk ran."""
    rng = random.Random(seed)
    running: dict[str, int] = {}  # id: prefill tokens left
    finished: list[str] = []
    slot, next_id = 0, 0
    for step in range(steps):
        events: list[tuple[str, str]] = []
        for _ in range(rng.choice((0, 0, 0, 1, 2, 5))):
            request_id = f"r{next_id}" if rng.random() > 0.05 or not finished else rng.choice(finished)
            next_id += 1
            running[request_id] = rng.choice((0, 1, 7, 300, 2048))
            events.append(("add", request_id))
        tokens: dict[str, int] = {}
        decode_only = True
        for request_id, prefill in list(running.items()):
            roll = rng.random()
            if roll < 0.04:
                continue  # absent: preempted, or over the token budget
            if prefill > 0:
                chunk = min(prefill, rng.choice((1, 64, 512)))
                running[request_id] = prefill - chunk
                tokens[request_id] = chunk
                decode_only = False
            else:
                tokens[request_id] = 0 if roll < 0.05 else rng.choice((2, 3)) if roll < 0.08 else 1
        if finished and rng.random() < 0.1:  # finished in an earlier step, still reported
            tokens[rng.choice(finished)] = 1
        for request_id in list(running):
            if rng.random() < 0.03:
                del running[request_id]
                finished.append(request_id)
                events.append(("pop", request_id))  # after the step (or while it was in flight)
        if rng.random() < 0.08:
            slot = rng.randrange(4)
        measured = rng.random() > 0.1
        yield events, tokens, step * 0.02, slot, rng.uniform(0.0, 2.0), measured, decode_only


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("rebase", [(4096, 64), (5, 2)])
def test_lazy_ledger_equals_per_step_charging(seed, rebase, monkeypatch):
    monkeypatch.setattr(ledger_module, "REBASE_STEPS", rebase[0])
    monkeypatch.setattr(ledger_module, "MAX_SEGMENTS", rebase[1])
    lazy, reference = EnergyLedger(), ReferenceLedger()
    for events, tokens, begin_s, slot, per_token_j, measured, decode_only in random_steps(seed, 600):
        for kind, request_id in events:
            if kind == "add":
                lazy.add(request_id)
                reference.add(request_id)
        total = sum(tokens.values())
        if total > 0:  # the controller never charges a step without tokens
            inv_tokens = 1.0 / total
            assert lazy.charge(tokens, begin_s, slot, per_token_j, inv_tokens, measured, decode_only) == \
                reference.charge(tokens, begin_s, slot, per_token_j, inv_tokens, measured, decode_only)
            assert lazy._steps <= rebase[0] and len(lazy._seg_slots) <= rebase[1]  # the sums restart
        for kind, request_id in events:
            if kind == "pop":
                assert_same(lazy.pop(request_id), reference.pop(request_id))
        assert len(lazy) == len(reference)
    for request_id in list(reference.traces):
        assert_same(lazy.pop(request_id), reference.pop(request_id))
    assert len(lazy) == 0 and lazy.pop("r0") is None


def test_a_decoder_is_settled_across_slots_and_unmeasured_steps():
    lazy = EnergyLedger()
    lazy.add("a")
    for step, (slot, measured) in enumerate([(0, True), (0, True), (2, False), (1, True), (2, True)]):
        assert lazy.charge({"a": 1, "b": 1}, 0.5 + step, slot, 1.0, 0.5, measured) == 1
    trace = lazy.pop("a")
    assert trace is not None and trace.first_s == 0.5 and trace.unmeasured
    assert trace.energy_j == pytest.approx(5.0) and trace.iteration_shares == pytest.approx(2.5)
    assert list(trace.tokens_by_slot.items()) == [(0, 2), (2, 2), (1, 1)]


class CyclingPolicy(DefaultArmPolicy):
    """Plays the arms in turn, a new one at each decision (so requests span several slots);
    learns nothing (the default-arm policy's other hooks)."""

    name = "cycling"

    def __init__(self, arms: ArmSet) -> None:
        super().__init__(arms)
        self.turn = 0

    def select(self, decision):
        available = decision.available
        self.turn += 1
        return available[(self.turn * 3) % len(available)]


class GappyDevice(FakeDevice):
    """A FakeDevice whose counter reads report gaps (unmeasured energy) when told to."""

    gaps = 0

    def energy_reading(self) -> EnergyReading:
        return EnergyReading(self.energy_j(), self.gaps)


def run_controller(seed: int, ledger: object | None) -> tuple[list, float, list[int]]:
    device = GappyDevice((306e6, 612e6, 930.75e6))
    arms = ArmSet.product(device.available_frequencies_hz(), (4, 8))
    controller = Controller(arms=arms, policy=CyclingPolicy(arms), device=device, cost=LogEDPCost(),
                            context_model=ContextModel(contextual=False, max_batch=8), epoch_iterations=3)
    if ledger is not None:
        controller._ledger = ledger  # type: ignore[assignment]
    rng = random.Random(seed)
    outcomes, tracked = [], []
    for events, tokens, begin_s, _, _, _, decode_only in random_steps(seed, 300):
        for kind, request_id in events:
            if kind == "add":
                controller.request_arrived(request_id, begin_s, 5)
        controller.begin_iteration(EngineSnapshot(now_s=begin_s, num_running=len(tokens), num_waiting=0))
        device.energy += rng.uniform(0.0, 3.0)
        if rng.random() < 0.1:
            device.gaps += 1
        if rng.random() < 0.05:
            tokens = {}  # a step that ran no tokens
        prefill = 0 if decode_only else sum(k for k in tokens.values() if k > 1)
        controller.end_iteration(begin_s + 0.02, IterationWork(tokens, prefill, sum(tokens.values()) - prefill))
        for kind, request_id in events:
            if kind == "pop" and rng.random() < 0.2:
                controller.request_aborted(request_id)
            elif kind == "pop":
                outcomes.append(controller.request_finished(FinishedRequest(
                    request_id=request_id, arrival_s=0.0, finish_s=begin_s + 0.02, prompt_tokens=5, output_tokens=3)))
        tracked.append(controller.tracked_requests)
    return outcomes, controller.energy_attributed_j, tracked


@pytest.mark.parametrize("seed", range(4))
def test_controller_outcomes_are_those_of_per_step_charging(seed):
    got, got_j, got_tracked = run_controller(seed, None)
    want, want_j, want_tracked = run_controller(seed, ReferenceLedger())
    assert got_tracked == want_tracked and got_j == pytest.approx(want_j, rel=REL)
    assert [o is None for o in got] == [o is None for o in want] and any(o is None for o in got)
    for a, b in zip(got, want, strict=True):
        if a is None or b is None:
            continue
        assert (a.request, a.energy_measured) == (b.request, b.energy_measured)
        assert a.first_scheduled_s == b.first_scheduled_s
        assert a.energy_j == pytest.approx(b.energy_j, rel=REL, abs=1e-12)
        assert a.iteration_shares == pytest.approx(b.iteration_shares, rel=REL)
        assert (a.decode_shares, a.decode_steps) == (pytest.approx(b.decode_shares, rel=REL, abs=1e-12), b.decode_steps)
        assert list(a.arm_shares) == list(b.arm_shares)
        assert list(a.arm_shares.values()) == pytest.approx(list(b.arm_shares.values()), rel=REL)
        assert (a.cost is None) == (b.cost is None)
        if a.cost is not None:
            assert a.cost == pytest.approx(b.cost, rel=REL, abs=1e-12)
