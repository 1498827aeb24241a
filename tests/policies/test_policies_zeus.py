"""zeus-ts: the rule of Zeus's GaussianTS (zeus 0.16.0, zeus/optimizer/batch_size/server/mab.py).

Zeus's default ``window_size=0`` fits each arm on its whole history (``zeus-ts``'s default);
``window=10`` is the named variant ``zeus-ts-w10``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.core.events import Context
from camel_vllm.policies.registry import make_policy
from camel_vllm.policies.zeus_ts import ZEUS_WINDOW, ZEUS_WINDOW_VARIANT, ZeusTSPolicy, fit_from_sums, zeus_fit_arm
from camel_vllm.policies.decision import DecisionInput


def test_fit_arm_is_zeus_rule_with_zero_prior_precision() -> None:
    costs = [3.0, 1.0, 2.0, 6.0]
    mean, prec = zeus_fit_arm(costs)
    var = np.var(costs)  # population variance, as np.var in Zeus
    assert prec == pytest.approx(len(costs) / var)
    assert mean == pytest.approx(np.mean(costs))  # prior precision 0: the prior mean drops out
    mean_p, prec_p = zeus_fit_arm(costs, prior_mean=10.0, prior_precision=2.0)
    assert prec_p == pytest.approx(2.0 + len(costs) / var)
    assert mean_p == pytest.approx((2.0 * 10.0 + sum(costs) / var) / prec_p)


def test_zero_variance_window_has_infinite_precision() -> None:
    assert zeus_fit_arm([4.0]) == (4.0, math.inf)
    assert zeus_fit_arm([2.5, 2.5, 2.5]) == (2.5, math.inf)


def test_two_exploration_pulls_per_arm_before_sampling() -> None:
    policy = ZeusTSPolicy(5, np.random.default_rng(0))
    seen: list[int] = []
    for _ in range(10):
        arm = policy.select(DecisionInput(Context(), list(range(5)), None))
        seen.append(arm)
        policy.observe(arm, Context(), float(arm), 1.0)
    assert sorted(seen) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert all(len(w) == 2 for w in policy.windows)


def test_window_variant_keeps_last_ten_costs() -> None:
    policy = ZeusTSPolicy(2, np.random.default_rng(0), window=ZEUS_WINDOW_VARIANT)
    for i in range(25):
        policy.observe(0, Context(), float(i), 1.0)
    assert list(policy.windows[0]) == [float(i) for i in range(25 - ZEUS_WINDOW_VARIANT, 25)]
    mean, _ = zeus_fit_arm(policy.windows[0])
    assert policy.estimates()[0].mean == pytest.approx(mean) == pytest.approx(19.5)


def test_default_window_is_zeus_default_all_history() -> None:
    assert ZEUS_WINDOW == 0  # zeus/optimizer/batch_size/common.py: window_size: int = 0
    arms = ArmSet.product([612e6, 930.75e6], [8, 16])
    policy = make_policy(CamelConfig(policy="zeus-ts"), arms, num_contexts=1)
    assert isinstance(policy, ZeusTSPolicy) and policy.window == 0
    costs = [float(c) for c in np.random.default_rng(3).normal(2.0, 0.5, 40)]
    for c in costs:
        policy.observe(1, Context(), c, 1.0)
    est = policy.estimates()[1]
    mean, prec = zeus_fit_arm(costs)  # all 40 costs, not the last 10
    assert est.mean == pytest.approx(mean, rel=1e-12)
    assert est.std == pytest.approx(1.0 / math.sqrt(prec), rel=1e-9)
    assert est.mean != pytest.approx(zeus_fit_arm(costs[-10:])[0], rel=1e-6)


def test_window_param_accepts_zero_and_refuses_negative() -> None:
    arms = ArmSet.product([612e6], [8, 16])
    for window in (0, 1, 10):
        built = make_policy(CamelConfig(policy="zeus-ts", policy_params={"window": window}), arms, num_contexts=1)
        assert built.window == window
    with pytest.raises(ConfigError, match="policy_params.window"):
        make_policy(CamelConfig(policy="zeus-ts", policy_params={"window": -1}), arms, num_contexts=1)


def test_all_history_fit_from_sums_matches_zeus_fit_on_random_histories() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        costs = rng.normal(rng.uniform(-3, 8), rng.uniform(0.01, 2.0), int(rng.integers(1, 400)))
        policy = ZeusTSPolicy(1, np.random.default_rng(0))
        for c in costs:
            policy.observe(0, Context(), float(c))
        mean, prec = zeus_fit_arm(costs)
        got_mean, got_prec = fit_from_sums(*policy.sums[0])
        assert got_mean == pytest.approx(mean, rel=1e-9, abs=1e-12)
        assert (math.isinf(got_prec) and math.isinf(prec)) or got_prec == pytest.approx(prec, rel=1e-6)


def test_all_history_identical_costs_have_infinite_precision() -> None:
    policy = ZeusTSPolicy(2, np.random.default_rng(0))
    for _ in range(5):
        policy.observe(0, Context(), 0.1)  # 0.1 is not exact in binary: sums leave rounding residue
        policy.observe(1, Context(), 3.0 + _)
    est = policy.estimates()
    assert est[0].mean == pytest.approx(0.1) and est[0].std == 0.0
    assert [policy.select(DecisionInput(Context(), [0, 1], None)) for _ in range(20)] == [0] * 20


def test_sampling_phase_draws_from_window_posterior() -> None:
    policy = ZeusTSPolicy(3, np.random.default_rng(1))
    # Arm 1: constant window (infinite precision) at 1.0; arms 0 and 2 far worse and noisy.
    for x in (1.0, 1.0, 1.0):
        policy.observe(1, Context(), x)
    for x in (5.0, 6.0, 7.0):
        policy.observe(0, Context(), x)
        policy.observe(2, Context(), x + 1.0)
    picks = [policy.select(DecisionInput(Context(), [0, 1, 2], None)) for _ in range(50)]
    assert picks == [1] * 50
    # Without arm 1, the draws follow N(mean, var / n): arm 0 (mean 6) beats arm 2 (mean 7) mostly.
    picks = [policy.select(DecisionInput(Context(), [0, 2], None)) for _ in range(400)]
    p0 = picks.count(0) / len(picks)
    sd = math.sqrt(np.var([5.0, 6.0, 7.0]) / 3)
    from scipy.stats import norm

    expected = norm.cdf(1.0 / math.sqrt(2 * sd * sd))  # P(draw0 < draw2)
    assert p0 == pytest.approx(expected, abs=0.06)


def test_state_round_trip() -> None:
    a = ZeusTSPolicy(3, np.random.default_rng(0), window=ZEUS_WINDOW_VARIANT)
    for i in range(7):
        a.observe(i % 3, Context(), float(i))
    b = ZeusTSPolicy(3, np.random.default_rng(0), window=ZEUS_WINDOW_VARIANT)
    b.load_state_dict(a.state_dict())
    assert [list(w) for w in b.windows] == [list(w) for w in a.windows]
    with pytest.raises(ValueError):
        ZeusTSPolicy(4, np.random.default_rng(0)).load_state_dict(a.state_dict())


def test_all_history_state_round_trip_and_window_conversions() -> None:
    a = ZeusTSPolicy(3, np.random.default_rng(0))
    for i in range(30):
        a.observe(i % 3, Context(), float(i) / 7.0)
    b = ZeusTSPolicy(3, np.random.default_rng(0))
    b.load_state_dict(a.state_dict())
    assert b.estimates() == a.estimates()
    windowed = ZeusTSPolicy(3, np.random.default_rng(0), window=ZEUS_WINDOW_VARIANT)
    for i in range(9):
        windowed.observe(i % 3, Context(), float(i))
    b.load_state_dict(windowed.state_dict())  # a windowed state's costs become the history
    assert [e.mean for e in b.estimates()] == pytest.approx([e.mean for e in windowed.estimates()])
    with pytest.raises(ValueError, match="window of 10"):
        windowed.load_state_dict(a.state_dict())
