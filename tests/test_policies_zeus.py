"""zeus-ts: the rule of Zeus's GaussianTS (ml-energy/zeus, zeus/optimizer/batch_size/server/mab.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from camel_vllm.policies.zeus_ts import ZEUS_WINDOW, ZeusTSPolicy, zeus_fit_arm
from camel_vllm.types import Context


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
        arm = policy.select(Context(), list(range(5)), None)
        seen.append(arm)
        policy.observe(arm, Context(), float(arm), 1.0)
    assert sorted(seen) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert all(len(w) == 2 for w in policy.windows)


def test_window_keeps_last_ten_costs() -> None:
    policy = ZeusTSPolicy(2, np.random.default_rng(0))
    for i in range(25):
        policy.observe(0, Context(), float(i), 1.0)
    assert list(policy.windows[0]) == [float(i) for i in range(25 - ZEUS_WINDOW, 25)]


def test_sampling_phase_draws_from_window_posterior() -> None:
    policy = ZeusTSPolicy(3, np.random.default_rng(1))
    # Arm 1: constant window (infinite precision) at 1.0; arms 0 and 2 far worse and noisy.
    for x in (1.0, 1.0, 1.0):
        policy.observe(1, Context(), x)
    for x in (5.0, 6.0, 7.0):
        policy.observe(0, Context(), x)
        policy.observe(2, Context(), x + 1.0)
    picks = [policy.select(Context(), [0, 1, 2], None) for _ in range(50)]
    assert picks == [1] * 50
    # Without arm 1, the draws follow N(mean, var / n): arm 0 (mean 6) beats arm 2 (mean 7) mostly.
    picks = [policy.select(Context(), [0, 2], None) for _ in range(400)]
    p0 = picks.count(0) / len(picks)
    sd = math.sqrt(np.var([5.0, 6.0, 7.0]) / 3)
    from scipy.stats import norm

    expected = norm.cdf(1.0 / math.sqrt(2 * sd * sd))  # P(draw0 < draw2)
    assert p0 == pytest.approx(expected, abs=0.06)


def test_state_round_trip() -> None:
    a = ZeusTSPolicy(3, np.random.default_rng(0))
    for i in range(7):
        a.observe(i % 3, Context(), float(i))
    b = ZeusTSPolicy(3, np.random.default_rng(0))
    b.load_state_dict(a.state_dict())
    assert [list(w) for w in b.windows] == [list(w) for w in a.windows]
    with pytest.raises(ValueError):
        ZeusTSPolicy(4, np.random.default_rng(0)).load_state_dict(a.state_dict())
