"""The SLO-aware policy and the step-time model it reads, on a synthetic roofline engine."""

from __future__ import annotations

import pytest

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig, ConfigError, SLOConfig
from camel_vllm.core.events import Context, EngineSnapshot, FinishedRequest, IterationWork, RequestOutcome
from camel_vllm.policies.base import ArmEstimate, Policy
from camel_vllm.policies.slo.policy import SLOPolicy
from camel_vllm.policies.decision import DecisionInput
from camel_vllm.policies.workload import WorkloadEstimator

FREQS_HZ = [306e6, 408e6, 510e6, 612e6, 714e6, 816e6, 930.75e6]
F_MAX = FREQS_HZ[-1]


def true_time_s(freq_hz: float, work: IterationWork) -> float:
    """A roofline-shaped engine: the weights and the context read at a pace the clock does not
    move, every token's FLOPs in cycles (~ 1/f)."""
    memory = 0.012 + 4e-7 * work.context_tokens
    compute = 0.002 * (work.num_decode_tokens + work.num_prefill_tokens) * F_MAX / freq_hz
    return memory + compute


def decode(batch: int, context: int, prefill: int = 0) -> IterationWork:
    return IterationWork(tokens_by_request={f"r{i}": 1 for i in range(batch)}, num_prefill_tokens=prefill,
                         num_decode_tokens=batch, context_tokens=context)


def arm_at(policy: SLOPolicy, freq_hz: float, cap: int) -> int:
    return next(i for i, a in enumerate(policy.arms.arms) if a.freq_hz == freq_hz and a.max_batch == cap)


def lowest_safe_freq(threshold_s: float, batch: int, context: int) -> float:
    return min(f for f in FREQS_HZ if true_time_s(f, decode(batch, context)) <= threshold_s)


def make_policy(metric="tpot", threshold_s=0.05, quantile=0.9, inner=None, batches=(4, 8)) -> SLOPolicy:
    config = CamelConfig(slo=SLOConfig(metric=metric, threshold_s=threshold_s, quantile=quantile))
    return SLOPolicy(config, ArmSet.product(FREQS_HZ, batches), num_contexts=1, inner=inner)


def drive(policy: SLOPolicy, *, epochs: int, batch: int = 8, context_per_req: int = 500,
          workload: WorkloadEstimator | None = None) -> list[int]:
    """Decode-only load of ``batch`` requests; returns the arm chosen each epoch."""
    chosen, current = [], None
    for epoch in range(epochs):
        snapshot = EngineSnapshot(now_s=float(epoch), num_running=batch, num_waiting=0)
        current = policy.select(DecisionInput(Context(), policy.arms.available_indices(), current, snapshot,
                                              workload=workload))
        chosen.append(current)
        freq = policy.arms[current].freq_hz
        for _ in range(16):
            work = decode(batch, batch * context_per_req)
            policy.observe_iteration(current, work, true_time_s(freq, work))
    return chosen


def test_projected_steps_follow_the_board_once_it_is_learned_across_frequencies():
    policy = make_policy(batches=(28,))
    for f in FREQS_HZ:
        for d in (1, 4, 8, 16, 28):
            for p, ctx in ((0, 200), (64, 300), (256, 400), (0, 900)):
                work = decode(d, d * ctx, prefill=p)
                policy.observe_iteration(arm_at(policy, f, 28), work, true_time_s(f, work), 1.0)
    policy.select(DecisionInput(Context(), policy.arms.available_indices(), None, None))
    for f in (306e6, 612e6, 930.75e6):
        work = decode(12, 12 * 700, prefill=128)
        assert policy._step_s(f, 128, 12, 12 * 700) == pytest.approx(true_time_s(f, work), rel=0.05)


def test_projected_steps_are_pessimistic_below_the_only_frequency_seen():
    policy = make_policy(batches=(16,))
    top = arm_at(policy, F_MAX, 16)
    for _ in range(8):
        for d in (2, 4, 8, 16):
            work = decode(d, d * 500)
            policy.observe_iteration(top, work, true_time_s(F_MAX, work), 1.0)
    policy.select(DecisionInput(Context(), policy.arms.available_indices(), None, None))
    for f in FREQS_HZ[:-1]:
        assert policy._step_s(f, 0, 8, 4000) >= true_time_s(f, decode(8, 4000))


def test_the_step_time_model_is_the_inner_policys_board_where_it_learns_one():
    from camel_vllm.policies.voltana import VoltanaPolicy

    config = CamelConfig(slo=SLOConfig(metric="tpot", threshold_s=0.05, quantile=0.9))
    arms = ArmSet.product(FREQS_HZ, (8,))
    inner = VoltanaPolicy(arms)
    policy = SLOPolicy(config, arms, num_contexts=1, inner=inner)
    assert policy.own_board is None
    policy.observe_iteration(0, decode(4, 2000), 0.03, 1.0)
    inner_iterations = inner.board.iterations + len(inner.board._buffer)
    assert inner_iterations == 1  # taught once, by the inner policy
    assert policy.state_dict()["model"] is None  # saved by the inner policy


def test_settles_on_lowest_frequency_that_keeps_tpot():
    threshold = 0.05
    policy = make_policy(threshold_s=threshold)
    chosen = drive(policy, epochs=40)
    assert policy.arms[chosen[0]].freq_hz == F_MAX  # warm-up at the default arm
    want = lowest_safe_freq(threshold, 8, 8 * 500)
    assert want < F_MAX  # the test is only meaningful if there is something to save
    final = policy.arms[chosen[-1]]
    assert final.freq_hz == want and final.max_batch == 8
    # it never went below the safe frequency while exploring downwards
    assert all(policy.arms[i].freq_hz >= want for i in chosen)


def test_tighter_slo_means_higher_frequency():
    loose = drive(make_policy(threshold_s=0.08), epochs=40)[-1]
    tight = drive(make_policy(threshold_s=0.035), epochs=40)[-1]
    arms = ArmSet.product(FREQS_HZ, (4, 8))
    assert arms[tight].freq_hz > arms[loose].freq_hz


def test_impossible_slo_falls_back_to_fastest_projection():
    policy = make_policy(threshold_s=0.001)
    chosen = drive(policy, epochs=5)
    assert policy.fallbacks >= 4
    assert policy.arms[chosen[-1]].freq_hz == F_MAX


def outcome(rid: str, *, latency_s: float, output_tokens: int = 50) -> RequestOutcome:
    req = FinishedRequest(request_id=rid, arrival_s=0.0, finish_s=latency_s, prompt_tokens=100,
                          output_tokens=output_tokens, first_token_s=0.1)
    return RequestOutcome(request=req, energy_j=1.0, edp_js=latency_s, cost=0.0)


def test_e2e_projection_uses_remaining_output_and_guard():
    policy = make_policy(metric="e2e", threshold_s=5.0, quantile=0.5)
    for i in range(50):  # outputs of 100 tokens (the controller feeds the workload estimate)
        policy.workload.observe_finished(100, 100)
        policy.observe_outcome(outcome(f"old{i}", latency_s=1.0, output_tokens=100))
    assert policy._inputs().mean_out == 100.0  # a request yet to start has 100 to go
    drive(policy, epochs=2, batch=4)
    fresh = policy.project(policy.arms.default_index())
    for _ in range(60):  # the same requests, 60 more decode steps each
        policy.observe_iteration(policy.arms.default_index(),
                                 IterationWork({f"r{i}": 1 for i in range(4)}, 0, 4, 2000), 0.02)
    later = policy.project(policy.arms.default_index())
    assert fresh > 0 and later != fresh
    guard_before = policy.guard
    for i in range(20):
        policy.observe_outcome(outcome(f"late{i}", latency_s=9.0))  # all violate
    assert policy.guard > guard_before
    assert policy.attainment == pytest.approx(50 / 70)


class RecordingPolicy(Policy):
    """A minimal inner policy: picks the lowest index (lowest frequency) offered; records calls."""

    name = "recording"

    def __init__(self) -> None:
        self.offered: list[list[int]] = []
        self.observed: list[tuple[int, float, float]] = []

    def select(self, decision):
        available = decision.available
        self.offered.append(list(available))
        return min(available)

    def observe(self, arm_index, context, cost, weight=1.0):
        self.observed.append((arm_index, cost, weight))

    def estimates(self):
        return [ArmEstimate(0, None, 1.0, 0.0, 1.0)]

    def state_dict(self):
        return {"x": 1}

    def load_state_dict(self, state):
        self.loaded = state


def test_inner_policy_chooses_among_safe_arms_only():
    inner = RecordingPolicy()
    policy = make_policy(threshold_s=0.05, inner=inner)
    drive(policy, epochs=30)
    want = lowest_safe_freq(0.05, 8, 4000)
    last = inner.offered[-1]
    assert all(policy.arms[i].freq_hz >= want for i in last)
    assert any(policy.arms[i].freq_hz == want for i in last)
    assert len(last) < len(policy.arms)
    policy.observe(3, Context(), 1.5, 0.5)
    assert inner.observed == [(3, 1.5, 0.5)]
    assert policy.estimates() == inner.estimates()
    state = policy.state_dict()
    assert state["inner"] == {"x": 1}
    fresh = make_policy(inner=RecordingPolicy())
    fresh.load_state_dict(state)
    assert fresh.inner.loaded == {"x": 1}
    assert fresh.own_board.iterations == policy.own_board.iterations > 0


def test_needs_an_slo_section():
    with pytest.raises(ConfigError, match="slo"):
        SLOPolicy(CamelConfig(), ArmSet.product(FREQS_HZ, (4,)), num_contexts=1)


def test_capacity_check_keeps_frequency_up_when_arrivals_outpace_service():
    # a loose TPOT SLO alone would allow the lowest clock
    calm = make_policy(threshold_s=1.0)
    busy = make_policy(threshold_s=1.0)
    for i in range(100):  # 100-token outputs; arrivals 10 s apart (calm) or 4 ms apart (busy)
        for policy, gap_s in ((calm, 10.0), (busy, 0.004)):
            policy.workload.observe_arrival(gap_s * i - gap_s * 100, 100)  # before the decisions at 0 s..
            policy.observe_outcome(RequestOutcome(
                request=FinishedRequest(f"r{i}", gap_s * i, gap_s * i + 1.0, 100, 100, gap_s * i + 0.1),
                energy_j=1.0, edp_js=1.0, cost=0.0))
    calm_arm = calm.arms[drive(calm, epochs=30, workload=calm.workload)[-1]]
    busy_arm = busy.arms[drive(busy, epochs=30, workload=busy.workload)[-1]]
    assert calm_arm.freq_hz == FREQS_HZ[0]
    assert busy_arm.freq_hz > calm_arm.freq_hz
    # busy: 250 req/s x 100 tokens needs 8 / t_iter >= 27,500 tokens/s: no arm can, so fastest
    assert not busy.keeps_up(busy.arms.index(busy_arm)) or busy_arm.freq_hz == F_MAX


def test_a_state_saved_before_the_board_model_loads_its_guard_and_learns_the_board_afresh(caplog):
    """States written when `slo` kept its own regression (``model: {a, b, observations}``) still
    load: the guard is kept, the old regression is set aside with one log line."""
    policy = make_policy()
    old = {"policy": "slo", "guard": 2.5, "inner": None,
           "model": {"a": [[0.0] * 8] * 8, "b": [0.0] * 8, "observations": 40}}
    with caplog.at_level("INFO", logger="vllm.camel"):
        policy.load_state_dict(old)
    assert policy.guard == 2.5
    assert policy.own_board.iterations == 0
    assert "learning the board afresh" in caplog.text
    drive(policy, epochs=3)
    state = policy.state_dict()
    fresh = make_policy()
    fresh.load_state_dict(state)
    assert fresh.own_board.iterations == policy.own_board.iterations > 0
    with pytest.raises(ValueError, match="guard"):
        fresh.load_state_dict({**state, "guard": -1.0})
