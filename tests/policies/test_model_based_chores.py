"""camel's work between decisions: spread so no engine iteration pays for much of it, and
spread without changing a single decision."""

from __future__ import annotations

import pytest

from camel_vllm.bench.sim import PolicySpec, SimSetup, run_one
from camel_vllm.core.config import CamelConfig
from camel_vllm.policies.model_based import board as board_module
from camel_vllm.policies.model_based import policy as policy_module
from camel_vllm.sim.engine import EngineConfig
from camel_vllm.traces import transforms
from camel_vllm.traces.synthetic import synthetic

#: The parts of the per-epoch work that each cost a share of a whole projection of every arm.
HEAVY = {
    (policy_module, "steady_start"), (policy_module, "steady_chunk"), (policy_module, "steady_finish"),
    (policy_module, "clock_steps"), (board_module.BoardModel, "prepare"),
    (board_module.BoardModel, "_refresh_corrections"),
}


def _h100_setup(epoch_s: float | None) -> SimSetup:
    return SimSetup.make(device_profile="h100-sxm", model_profile="llama-3.1-8b", seed=0,
                         engine=EngineConfig(256, 8192), base=CamelConfig(epoch_s=epoch_s))


_SELECT = policy_module.ModelBasedPolicy.select


def _decisions(monkeypatch: pytest.MonkeyPatch, setup: SimSetup, requests: int, rps: float) -> list[int]:
    chosen: list[int] = []
    select = _SELECT

    def recorded(self, *args, **kwargs):
        chosen.append(select(self, *args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(policy_module.ModelBasedPolicy, "select", recorded)
    run_one(setup, PolicySpec("camel", "camel"), transforms.target_rps(synthetic("on-off", requests, seed=3), rps))
    return chosen


@pytest.mark.parametrize("epoch_s", [None, 0.0], ids=["2-s-epochs", "iteration-epochs"])
def test_no_maintain_call_does_more_than_one_heavy_part(monkeypatch, epoch_s) -> None:
    """On the H100's 161 arms, each maintain() call runs at most one of the heavy parts (the
    board's per-clock misfit, its preparation, the arms' steps, the three parts of the
    queue-free projection), so the engine's 99th-percentile iteration carries one part, not a
    whole projection (README, overhead). The one exception is the call that finds the model
    ready for the first time with nothing prepared yet; decisions may do several (an early one
    projects itself)."""
    calls: list[list[int]] = []  # per maintain() call: model decisions before it, heavy parts it ran
    inside: list[bool] = [False]

    def counted(owner, name):
        original = getattr(owner, name, None)

        def run(*args, **kwargs):
            if inside[0]:
                calls[-1][1] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(owner, name, run, raising=False)

    for owner, name in HEAVY:
        counted(owner, name)
    maintain = policy_module.ModelBasedPolicy.maintain

    def tracked(self):
        calls.append([self.model_decisions, 0])
        inside[0] = True
        try:
            return maintain(self)
        finally:
            inside[0] = False

    monkeypatch.setattr(policy_module.ModelBasedPolicy, "maintain", tracked)
    chosen = _decisions(monkeypatch, _h100_setup(epoch_s), 600, 12.0)
    heavy = [n for decided, n in calls if decided and n]
    assert len(chosen) > 20 and len(heavy) > 2 * len(chosen), (len(chosen), len(heavy))
    assert max(heavy) == 1, sorted(heavy)[-5:]


def test_work_done_while_the_projection_waits_changes_no_decision(monkeypatch) -> None:
    """maintain() makes the arms' steps under the draw (projection.clock_steps) on the idle
    iterations before the projection is due; the projection would otherwise make them itself.
    Made ahead or not, every decision on the H100 is the same (so they are made from the same
    coefficients and step work, never from a stale draw)."""
    setup = _h100_setup(None)
    ahead = _decisions(monkeypatch, setup, 500, 10.0)
    original = policy_module.ModelBasedPolicy._draw

    def draw_nothing_ahead(self):
        original(self)
        self._steps_due = False  # maintain() makes no steps ahead: the projection makes them

    monkeypatch.setattr(policy_module.ModelBasedPolicy, "_draw", draw_nothing_ahead)
    made = {"maintain": 0}
    steps = policy_module.clock_steps
    maintain = policy_module.ModelBasedPolicy.maintain
    inside = []

    def counted(*args):
        made["maintain"] += bool(inside)
        return steps(*args)

    def tracked(self):
        inside.append(1)
        try:
            return maintain(self)
        finally:
            inside.pop()

    monkeypatch.setattr(policy_module, "clock_steps", counted)
    monkeypatch.setattr(policy_module.ModelBasedPolicy, "maintain", tracked)
    itself = _decisions(monkeypatch, setup, 500, 10.0)
    assert made["maintain"] >= 10  # by the projection's first part, in maintain() still
    assert len(set(ahead)) > 1 and itself == ahead
