"""Policies: registry, Thompson sampling behaviour, baselines, SLO guard, warm start."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig, ConfigError, SLOConfig
from camel_vllm.core.events import Context, FinishedRequest, RequestOutcome
from camel_vllm.policies.baselines import OraclePolicy
from camel_vllm.policies.registry import make_policy
from camel_vllm.policies.decision import Deadline, DecisionInput

FREQS_MHZ = (306.0, 408.0, 510.0, 612.0, 714.0, 816.0, 930.75)
BATCHES = (4, 8, 12, 16, 20, 24, 28)
ALL_POLICIES = ("camel", "camel-ts", "ts", "default", "static", "grid", "ucb", "epsilon", "zeus-ts", "oracle")


def orin_arms() -> ArmSet:
    return ArmSet.product([f * 1e6 for f in FREQS_MHZ], BATCHES)


def small_arms(n_freq: int = 3, n_batch: int = 3) -> ArmSet:
    return ArmSet.product([f * 1e6 for f in FREQS_MHZ[:n_freq]], BATCHES[:n_batch])


def build(name: str, arms: ArmSet, *, seed: int = 0, contexts: int = 6, **kw) -> object:
    params = kw.pop("policy_params", {})
    if name == "static" and not params:
        params = {"arm": [FREQS_MHZ[0], BATCHES[0]]}
    config = CamelConfig(policy=name, seed=seed, policy_params=params, **kw)
    if name == "oracle":  # told the true mean costs: only a simulator builds it (camel_vllm.bench.bandit.run_policy)
        return OraclePolicy(len(arms), np.linspace(1.0, 2.0, len(arms)), np.random.default_rng(config.seed))
    return make_policy(config, arms, num_contexts=contexts)


def play(policy, means: np.ndarray, steps: int, *, noise: float, seed: int, context: Context = Context(),
         available: list[int] | None = None) -> list[int]:
    rng = np.random.default_rng(seed)
    avail = available if available is not None else list(range(len(means)))
    chosen, current = [], None
    for _ in range(steps):
        arm = policy.select(DecisionInput(context, avail, current))
        policy.observe(arm, context, float(means[arm] + noise * rng.standard_normal()), 1.0)
        chosen.append(arm)
        current = arm
    return chosen


# ----------------------------------------------------------------- Thompson sampling
@pytest.mark.parametrize("name", ["ts", "camel-ts"])
def test_thompson_plays_best_arm_in_last_quarter(name: str) -> None:
    arms = small_arms(4, 3)  # 12 arms
    means = np.random.default_rng(3).uniform(1.0, 2.0, len(arms))
    best = int(np.argmin(means))
    means[best] -= 0.3  # a clear best arm
    policy = build(name, arms, seed=7)
    chosen = play(policy, means, 1200, noise=0.2, seed=11)
    last = chosen[-300:]
    assert sum(a == best for a in last) / len(last) > 0.9


def test_contextual_camel_follows_a_context_switch() -> None:
    arms = small_arms(3, 3)
    low = np.linspace(1.0, 2.0, len(arms))  # arm 0 best at low load
    high = low[::-1].copy()  # the last arm best at high load
    policy = build("camel-ts", arms, seed=1)
    play(policy, low, 400, noise=0.1, seed=2, context=Context(id=0))
    chosen = play(policy, high, 400, noise=0.1, seed=3, context=Context(id=2))
    assert np.mean(np.asarray(chosen[-100:]) == len(arms) - 1) > 0.9
    # The low-load context kept what it learned.
    back = play(policy, low, 50, noise=0.1, seed=4, context=Context(id=0))
    assert np.mean(np.asarray(back) == 0) > 0.8


def test_noncontextual_ts_ignores_context_ids() -> None:
    arms = small_arms(2, 2)
    policy = build("ts", arms, seed=1)
    policy.observe(1, Context(id=3), 0.5)
    assert policy.stats.shape == (1, len(arms))
    assert policy.stats.n[0, 1] == 1.0


def test_camel_shares_evidence_with_a_new_context() -> None:
    arms = small_arms(3, 3)
    means = np.linspace(1.0, 2.0, len(arms))
    policy = build("camel-ts", arms, seed=5, policy_params={"additive_kappa": 0.0})
    play(policy, means, 300, noise=0.1, seed=6, context=Context(id=0))
    # A context never seen starts from the others' posterior: its first picks are good arms.
    first = play(policy, means, 20, noise=0.1, seed=7, context=Context(id=1))
    assert np.mean(means[first] - means.min()) < 0.3
    independent = build("camel-ts", arms, seed=5, policy_params={"additive_kappa": 0.0, "share_strength": 0.0})
    play(independent, means, 300, noise=0.1, seed=6, context=Context(id=0))
    first_indep = play(independent, means, 20, noise=0.1, seed=7, context=Context(id=1))
    assert np.mean(means[first]) < np.mean(means[first_indep])


def test_weighted_observation_counts_as_fractional_pulls() -> None:
    policy = build("ts", small_arms(2, 2))
    policy.observe(2, Context(), 1.0, 0.25)
    policy.observe(2, Context(), 3.0, 0.75)
    assert policy.stats.n[0, 2] == pytest.approx(1.0)
    assert policy.stats.xbar[0, 2] == pytest.approx(2.5)
    pooled = [e for e in policy.estimates() if e.context_id is None and e.arm_index == 2][0]
    assert pooled.pulls == pytest.approx(1.0)


def test_switch_cost_keeps_the_frequency_in_force() -> None:
    arms = small_arms(3, 2)  # arm index = freq_index * 2 + batch_index
    means = np.array([1.00, 1.01, 1.02, 1.03, 1.04, 1.05])
    sticky = build("ts", arms, seed=3, switch_cost=5.0)
    for a in range(len(arms)):
        for _ in range(5):
            sticky.observe(a, Context(), float(means[a]))
    picks = [sticky.select(DecisionInput(Context(), list(range(len(arms))), 4)) for _ in range(50)]
    assert all(arms[p].freq_hz == arms[4].freq_hz for p in picks)


def test_set_prior_means_warm_starts() -> None:
    arms = small_arms(3, 3)
    policy = build("camel-ts", arms, seed=2)
    means = [2.0] * len(arms)
    means[5] = 0.0
    policy.set_prior_means(means, strength=20.0)
    picks = [policy.select(DecisionInput(Context(), list(range(len(arms))), None)) for _ in range(20)]
    assert picks.count(5) >= 18
    with pytest.raises(ValueError):
        policy.set_prior_means([1.0], strength=1.0)


def test_select_cost_is_bounded_by_vectorised_work() -> None:
    # 49 arms, 6 contexts: select returns a valid arm for every context and availability.
    arms = orin_arms()
    policy = build("camel-ts", arms, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        ctx = Context(id=int(rng.integers(6)))
        avail = sorted(rng.choice(len(arms), size=int(rng.integers(1, len(arms) + 1)), replace=False).tolist())
        arm = policy.select(DecisionInput(ctx, avail, None))
        assert arm in avail
        policy.observe(arm, ctx, float(rng.normal(3.0, 0.3)), float(rng.uniform(0.1, 1.0)))


# ------------------------------------------------------------------------ baselines
@pytest.mark.parametrize("name", ALL_POLICIES)
def test_every_policy_respects_available(name: str) -> None:
    arms = orin_arms()
    policy = build(name, arms, seed=4)
    rng = np.random.default_rng(9)
    current = None
    for _ in range(150):
        size = int(rng.integers(1, 6))
        avail = sorted(rng.choice(len(arms), size=size, replace=False).tolist())
        arm = policy.select(DecisionInput(Context(id=int(rng.integers(6))), avail, current))
        assert arm in avail
        policy.observe(arm, Context(), float(rng.normal(2.0, 0.5)), 1.0)
        current = arm
    if name != "camel":  # the model-based policy learns from iterations, not from costs
        assert len(policy.estimates()) >= len(arms)


@pytest.mark.parametrize("name", ["camel-ts", "ts", "epsilon", "zeus-ts", "ucb", "grid"])
def test_seeded_runs_are_reproducible(name: str) -> None:
    arms = orin_arms()
    means = np.random.default_rng(1).uniform(1.0, 2.0, len(arms))
    a = play(build(name, arms, seed=42), means, 200, noise=0.3, seed=5)
    b = play(build(name, arms, seed=42), means, 200, noise=0.3, seed=5)
    assert a == b
    if name in ("camel-ts", "ts", "epsilon", "zeus-ts"):
        c = play(build(name, arms, seed=43), means, 200, noise=0.3, seed=5)
        assert a != c


def test_default_is_max_frequency_max_batch_among_available() -> None:
    arms = orin_arms()
    policy = build("default", arms)
    assert arms[policy.select(DecisionInput(Context(), list(range(len(arms))), None))].label == "930.75/28"
    without_top = [i for i, a in enumerate(arms.arms) if a.freq_mhz != 930.75]
    assert arms[policy.select(DecisionInput(Context(), without_top, None))].label == "816/28"


def test_static_arm_and_its_fallback() -> None:
    arms = orin_arms()
    policy = build("static", arms, policy_params={"arm": [612, 16]})
    target = arms.index(arms[[a.label for a in arms.arms].index("612/16")])
    assert policy.select(DecisionInput(Context(), list(range(len(arms))), None)) == target
    no_612 = [i for i, a in enumerate(arms.arms) if a.freq_mhz != 612]
    fallback = arms[policy.select(DecisionInput(Context(), no_612, None))]
    assert fallback.max_batch == 16 and fallback.freq_mhz in (510, 714)


def test_static_arm_not_in_set_is_one_clear_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        build("static", orin_arms(), policy_params={"arm": [1000, 16]})
    assert "policy_params.arm" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="policy_params.arm"):
        build("static", orin_arms(), policy_params={"arm": 612})


def test_unknown_policy_param_and_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="policy_params.kk"):
        build("grid", orin_arms(), policy_params={"kk": 3})
    with pytest.raises(ConfigError, match="policy_params.epsilon"):
        build("epsilon", orin_arms(), policy_params={"epsilon": 2.0})
    with pytest.raises(ConfigError, match="policy_params.prior_beta"):
        build("camel-ts", orin_arms(), policy_params={"prior_beta": -1.0})


def test_removed_neighbour_kappa_loads_at_its_old_default_and_is_one_line_otherwise() -> None:
    for name in ("camel-ts", "ts"):  # a config that spelled out the old default (0) loads as before
        with_key = build(name, orin_arms(), seed=5, policy_params={"neighbour_kappa": 0})
        without = build(name, orin_arms(), seed=5)
        assert with_key.params == without.params
    wrapped = make_policy(CamelConfig(policy="slo", slo=SLOConfig(),
                                      policy_params={"inner": "ts", "neighbour_kappa": 0.0}),
                          orin_arms(), num_contexts=6)
    assert wrapped.inner.params == without.params
    for params in ({"neighbour_kappa": 4}, {"inner": "camel-ts", "neighbour_kappa": 4}):
        with pytest.raises(ConfigError) as err:
            build("slo" if "inner" in params else "camel-ts", orin_arms(), policy_params=params, slo=SLOConfig())
        assert err.value.key == "policy_params.neighbour_kappa" and "\n" not in str(err.value)
        assert str(err.value).startswith("camel config: policy_params.neighbour_kappa=4: removed")
    with pytest.raises(ConfigError, match="not a parameter of policy grid"):
        build("grid", orin_arms(), policy_params={"neighbour_kappa": 0})  # never a grid key


def test_oracle_needs_true_means_and_plays_their_argmin() -> None:
    arms = small_arms(2, 2)
    with pytest.raises(ConfigError, match="oracle"):
        make_policy(CamelConfig(policy="oracle"), arms, num_contexts=1)
    oracle = OraclePolicy(len(arms), [[3, 1, 2, 4], [1, 3, 2, 4]], np.random.default_rng(0))
    assert oracle.select(DecisionInput(Context(id=0), [0, 1, 2, 3], None)) == 1
    assert oracle.select(DecisionInput(Context(id=1), [0, 1, 2, 3], None)) == 0
    assert oracle.select(DecisionInput(Context(id=0), [0, 2, 3], None)) == 2


def test_grid_tries_each_arm_k_times_then_commits() -> None:
    arms = small_arms(2, 2)
    means = np.array([2.0, 1.0, 3.0, 1.5])
    policy = build("grid", arms, policy_params={"k": 3})
    chosen = play(policy, means, 30, noise=0.01, seed=0)
    assert sorted(chosen[:12]) == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert set(chosen[12:]) == {1}


def test_epsilon_and_ucb_find_a_clear_best_arm() -> None:
    arms = small_arms(3, 3)
    means = np.linspace(1.0, 3.0, len(arms))
    for name in ("epsilon", "ucb"):
        chosen = play(build(name, arms, seed=1), means, 600, noise=0.2, seed=2)
        assert np.mean(np.asarray(chosen[-150:]) == 0) > 0.8, name


def test_slo_policy_missing_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "camel_vllm.policies.slo.policy", None)
    with pytest.raises(ConfigError, match="slo"):
        make_policy(CamelConfig(policy="slo"), small_arms(), num_contexts=1)


# ------------------------------------------------------------------------ SLO guard
def _outcome(arm: int, latency_s: float, context: Context = Context()) -> RequestOutcome:
    req = FinishedRequest("r", arrival_s=0.0, finish_s=latency_s, prompt_tokens=10, output_tokens=10,
                          first_token_s=latency_s / 10)
    return RequestOutcome(request=req, energy_j=1.0, edp_js=latency_s, cost=0.0, arm_shares={(context, arm): 1.0})


def test_slo_guard_excludes_arms_that_break_the_slo() -> None:
    arms = small_arms(2, 2)
    policy = build("camel-ts", arms, seed=0, slo=SLOConfig(metric="e2e", threshold_s=2.0, quantile=0.9))
    rng = np.random.default_rng(0)
    for _ in range(10):
        for a in range(len(arms)):
            # Arm 0 is the cheapest but slow (5 s); the others meet the 2 s SLO.
            policy.observe(a, Context(), 0.0 if a == 0 else 1.0)
            policy.observe_outcome(_outcome(a, (5.0 if a == 0 else 1.0) * float(np.exp(0.05 * rng.standard_normal()))))
    picks = {policy.select(DecisionInput(Context(), list(range(len(arms))), None)) for _ in range(30)}
    assert 0 not in picks
    # Only the slow arm available: never exclude everything.
    assert policy.select(DecisionInput(Context(), [0], None)) == 0


def test_slo_guard_falls_back_to_the_fastest_when_all_break_it() -> None:
    arms = small_arms(2, 2)
    policy = build("camel-ts", arms, seed=0, slo=SLOConfig(metric="ttft", threshold_s=0.01, quantile=0.5))
    for _ in range(5):
        for a, lat in enumerate([4.0, 3.0, 1.0, 2.0]):
            policy.observe(a, Context(), 0.0)
            policy.observe_outcome(_outcome(a, lat))
    assert policy.select(DecisionInput(Context(), [0, 1, 2, 3], None)) == 2


def test_slo_guard_waits_for_evidence() -> None:
    arms = small_arms(2, 2)
    policy = build("camel-ts", arms, seed=0, slo=SLOConfig(metric="e2e", threshold_s=1.0, quantile=0.9))
    policy.observe_outcome(_outcome(1, 10.0))  # one slow request is not enough evidence
    for _ in range(5):
        for a in range(len(arms)):
            policy.observe(a, Context(), -5.0 if a == 1 else 5.0)
    assert policy.select(DecisionInput(Context(), [0, 1, 2, 3], None)) == 1


def test_slo_policy_wraps_camel_or_runs_frequency_only() -> None:
    slo = SLOConfig(metric="tpot", threshold_s=0.1, quantile=0.9)
    wrapped = make_policy(CamelConfig(policy="slo", slo=slo,
                                      policy_params={"inner": "camel-ts", "share_strength": 5.0}),
                          orin_arms(), num_contexts=6)
    assert wrapped.inner is not None and wrapped.inner.name == "camel-ts"
    assert wrapped.inner.slo is None  # the SLO policy owns the guard
    alone = make_policy(CamelConfig(policy="slo", slo=slo), orin_arms(), num_contexts=6)
    assert alone.inner is None  # plain ``slo`` is throttLL'eM's frequency-only policy
    explicit = make_policy(CamelConfig(policy="slo", slo=slo, policy_params={"inner": None}), orin_arms(),
                           num_contexts=6)
    assert explicit.inner is None
    with pytest.raises(ConfigError, match="policy_params.k"):
        make_policy(CamelConfig(policy="slo", slo=slo, policy_params={"k": 3}), orin_arms(), num_contexts=6)


def test_slo_around_voltana_runs_voltanas_step_clock() -> None:
    """slo with a per-step inner policy: the step clock is the inner rule's, not the arm's."""
    from camel_vllm.core.events import IterationWork

    slo = SLOConfig(metric="tpot", threshold_s=0.1, quantile=0.9)
    arms = orin_arms()
    wrapped = make_policy(CamelConfig(policy="slo", slo=slo, policy_params={"inner": "voltana"}), arms,
                          num_contexts=6)
    alone = make_policy(CamelConfig(policy="voltana", slo=slo), arms, num_contexts=6)
    low = arms[0]  # the lowest clock: voltana runs the top clock until its step-time model is fitted
    decode = IterationWork(tokens_by_request={"a": 1, "b": 1}, num_prefill_tokens=0, num_decode_tokens=2)
    expected = alone.step_frequency(decode, low)
    assert expected is not None and expected != low.freq_hz
    assert wrapped.step_frequency(decode, low) == expected
    plain = make_policy(CamelConfig(policy="slo", slo=slo), arms, num_contexts=6)
    assert plain.step_frequency(decode, low) == low.freq_hz


def test_queue_guard_leaves_out_caps_below_the_demand() -> None:
    from camel_vllm.core.events import EngineSnapshot

    arms = small_arms(3, 3)  # caps 4, 8, 12; arm index = freq_index * 3 + batch_index
    means = np.array([1.0, 1.5, 1.6] * 3)  # cap 4 looks cheapest (its queueing is not credited)
    camel, ts = build("camel-ts", arms, seed=5), build("ts", arms, seed=5)
    for policy in (camel, ts):
        for a in range(len(arms)):
            for _ in range(20):
                policy.observe(a, Context(), float(means[a]))
    busy = EngineSnapshot(now_s=1.0, num_running=6, num_waiting=3)
    picks = [camel.select(DecisionInput(Context(), list(range(len(arms))), None, busy)) for _ in range(50)]
    assert all(arms[p].max_batch == 12 for p in picks)  # 9 requests in the engine: cap >= 9
    # Demand above every cap: only the largest caps stay.
    full = EngineSnapshot(now_s=2.0, num_running=20, num_waiting=10)
    assert all(arms[camel.select(DecisionInput(Context(), [0, 1, 4, 3], None, full))].max_batch == 8 for _ in range(20))
    # Camel's non-contextual bandit (ts) ignores the engine state.
    assert sum(arms[ts.select(DecisionInput(Context(), list(range(len(arms))), None, full))].max_batch == 4
               for _ in range(50)) > 40
    idle = EngineSnapshot(now_s=3.0, num_running=0, num_waiting=0)
    assert sum(arms[camel.select(DecisionInput(Context(), list(range(len(arms))), None, idle))].max_batch == 4
               for _ in range(50)) > 40


def test_low_load_additive_cap_applies_only_to_the_lowest_load_bucket() -> None:
    arms = small_arms(3, 3)
    low, high = Context(id=0, features=(0.0, 0.0)), Context(id=4, features=(2.0, 0.0))
    strong = build("camel-ts", arms, seed=1)
    for context in (low, high):
        strong.observe(0, context, 1.0)
    assert strong._additive_cap(0) == 200.0 and strong._additive_cap(4) == 8.0
    off = build("camel-ts", arms, seed=1, policy_params={"additive_kappa_low_load": 0.0})
    for context in (low, high):
        off.observe(0, context, 1.0)
    assert off._additive_cap(0) == off._additive_cap(4) == 8.0
    flat = build("camel-ts", arms, seed=1, policy_params={"additive_kappa": 0.0})
    flat.observe(0, low, 1.0)
    assert flat._additive_cap(0) == 0.0  # the additive model stays off when disabled


def test_change_detection_forgets_a_context_whose_costs_shift() -> None:
    arms = small_arms(3, 3)
    low = np.linspace(1.0, 2.0, len(arms))  # arm 0 best
    shifted = low[::-1] + 1.0  # everything dearer, arm 0 now the worst
    policy = build("camel-ts", arms, seed=1)
    context = Context(id=0, features=(0.0, 0.0))
    play(policy, low, 400, noise=0.1, seed=2, context=context)
    assert policy.changes_detected == 0
    assert policy.stats.n[0].sum() == 400
    chosen = play(policy, shifted, 300, noise=0.1, seed=3, context=context)
    assert policy.changes_detected >= 1
    assert policy.stats.n[0].sum() < 300  # the old level's statistics were dropped
    assert np.mean(np.asarray(chosen[-100:]) == len(arms) - 1) > 0.9
    # Without the detector the strong low-load prior holds the stale optimum longer.
    stale = build("camel-ts", arms, seed=1, policy_params={"change_threshold": 0.0})
    play(stale, low, 400, noise=0.1, seed=2, context=context)
    chosen_stale = play(stale, shifted, 300, noise=0.1, seed=3, context=context)
    assert stale.changes_detected == 0
    regret = lambda picks: float(np.sum(shifted[picks] - shifted.min()))  # noqa: E731
    assert regret(chosen) < regret(chosen_stale)


def test_change_detection_stays_quiet_on_stationary_noise() -> None:
    arms = small_arms(3, 3)
    means = np.linspace(1.0, 2.0, len(arms))
    policy = build("camel-ts", arms, seed=4)
    # Heavy-tailed noise (Student-t, 3 dof) around fixed means: single outliers are clipped.
    rng = np.random.default_rng(5)
    context = Context(id=0, features=(0.0, 0.0))
    for _ in range(5000):
        arm = policy.select(DecisionInput(context, list(range(len(arms))), None))
        policy.observe(arm, context, float(means[arm] + 0.2 * rng.standard_t(3)))
    assert policy.changes_detected == 0


def test_queue_guard_and_low_load_prior_are_policy_params() -> None:
    on = make_policy(CamelConfig(policy="camel-ts"), orin_arms(), num_contexts=6)
    off = make_policy(
        CamelConfig(policy="camel-ts", policy_params={"queue_guard": False, "additive_kappa_low_load": 50.0}),
        orin_arms(), num_contexts=6,
    )
    assert on.params.queue_guard is True and on.params.additive_kappa_low_load == 200.0
    assert on.params.change_threshold == 10.0 and on.params.change_drift == 1.5
    ts = make_policy(CamelConfig(policy="ts"), orin_arms(), num_contexts=6)
    assert ts.params.change_threshold == 0.0  # Camel's paper bandit stays as published
    assert off.params.queue_guard is False and off.params.additive_kappa_low_load == 50.0
    with pytest.raises(ConfigError, match="policy_params.queue_guard"):
        make_policy(CamelConfig(policy="camel-ts", policy_params={"queue_guard": "yes"}), orin_arms(), num_contexts=6)


def test_maintain_moves_prior_rebuilds_and_the_draw_off_the_decision() -> None:
    arms = small_arms(3, 3)
    means = np.linspace(1.0, 2.0, len(arms))
    policy = build("camel-ts", arms, seed=2)
    context = Context(id=0, features=(0.0, 0.0))
    play(policy, means, 30, noise=0.1, seed=3, context=context)
    for _ in range(3):  # from now on the controller's hook drives the refreshes
        policy.maintain(Deadline(0))
    policy.select(DecisionInput(context, list(range(len(arms))), None))
    built_at = policy._prior_cache[0][0]
    for arm in (0, 1, 2):
        policy.observe(arm, context, 1.5)
    policy.select(DecisionInput(context, list(range(len(arms))), None))
    assert policy._prior_cache[0][0] == built_at  # the decision took the prior as maintained
    policy.maintain(Deadline(0))  # first half: the shared prior
    assert policy._half_built is not None and policy._prior_cache[0][0] == built_at
    policy.maintain(Deadline(0))  # second half: the additive grid fit, installed
    assert policy._half_built is None and policy._prior_cache[0][0] == policy._observations
    policy.maintain(Deadline(0))  # nothing stale: the draw for the context decided last
    assert policy._predraw is not None and policy._predraw[0] == 0
    draws = policy._predraw[1].copy()
    chosen = policy.select(DecisionInput(context, list(range(len(arms))), None))
    assert chosen == int(np.argmin(draws)) and policy._predraw is None
    # Rebuilt through maintain() or inside select(), the prior is the same.
    fresh = build("camel-ts", arms, seed=2)
    play(fresh, means, 30, noise=0.1, seed=3, context=context)
    for arm in (0, 1, 2):
        fresh.observe(arm, context, 1.5)
    fresh.select(DecisionInput(context, list(range(len(arms))), None))
    for mine, theirs in zip(policy._prior_cache[0][2], fresh._prior_cache[0][2], strict=False):
        np.testing.assert_allclose(mine, theirs)


def test_maintain_refreshes_a_context_at_most_once_between_decisions() -> None:
    arms = small_arms(3, 3)
    policy = build("camel-ts", arms, seed=2)
    context = Context(id=0, features=(0.0, 0.0))
    play(policy, np.linspace(1.0, 2.0, len(arms)), 20, noise=0.1, seed=3, context=context)
    policy.select(DecisionInput(context, list(range(len(arms))), None))
    for _ in range(3):
        policy.observe(0, context, 1.0)
        policy.observe(1, context, 1.0)
        policy.maintain(Deadline(0))
        policy.maintain(Deadline(0))
    assert policy._prior_cache[0][0] < policy._observations  # stale again, but not rebuilt twice
