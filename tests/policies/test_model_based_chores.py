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

    def tracked(self, deadline):
        calls.append([self.model_decisions, 0])
        inside[0] = True
        try:
            return maintain(self, deadline)
        finally:
            inside[0] = False

    monkeypatch.setattr(policy_module.ModelBasedPolicy, "maintain", tracked)
    chosen = _decisions(monkeypatch, _h100_setup(epoch_s), 600, 12.0)
    heavy = [n for decided, n in calls if decided and n]
    assert len(chosen) > 20 and len(heavy) > 2 * len(chosen), (len(chosen), len(heavy))
    assert max(heavy) == 1, sorted(heavy)[-5:]


def test_the_steps_made_ahead_are_those_of_the_draw_the_projection_plays() -> None:
    """maintain() makes the arms' steps under the mean and the draw (projection.clock_steps) on
    the iteration after the draw, and the projection uses them when it falls due: on the H100,
    at every projection, they are the steps the board model's mean, the draw and the step work
    in force give then (never a stale draw's)."""
    import numpy as np

    checked = {"projections": 0}
    start = policy_module.steady_start

    def checked_start(arms, steps, load, **kwargs):
        policy = holder["policy"]
        mean, draw = holder["asked"]  # what the projection asked _arm_steps for
        assert mean is policy.board.mean_coefficients()
        coef = _coef(mean, draw, policy._coef_buffer)
        fresh = policy_module.clock_steps(arms, coef, coef[:, policy._top_clock, 0], policy._work)
        for name in ("t1", "t_full", "g_t", "e1", "g_e", "beta_t", "beta_e", "chunk_rows"):
            assert np.array_equal(getattr(steps, name), getattr(fresh, name)), name
        checked["projections"] += 1
        return start(arms, steps, load, **kwargs)

    def _coef(mean, draw, like):
        coef = np.empty_like(like)
        coef[0, :, 0], coef[0, :, 1] = mean.time_s, mean.energy_j
        coef[1, :, 0], coef[1, :, 1] = draw.time_s, draw.energy_j
        coef[2] = coef[0]
        return coef

    holder: dict = {}
    init = policy_module.ModelBasedPolicy.__init__

    def remembered(self, *args, **kwargs):
        init(self, *args, **kwargs)
        holder["policy"] = self

    arm_steps = policy_module.ModelBasedPolicy._arm_steps

    def asked(self, mean, draw):
        holder["asked"] = (mean, draw)
        return arm_steps(self, mean, draw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(policy_module.ModelBasedPolicy, "__init__", remembered)
        patch.setattr(policy_module, "steady_start", checked_start)
        patch.setattr(policy_module.ModelBasedPolicy, "_arm_steps", asked)
        chosen = _decisions(patch, _h100_setup(None), 500, 10.0)
    assert checked["projections"] >= 10 and len(set(chosen)) > 1
