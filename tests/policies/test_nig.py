"""The normal-inverse-gamma posterior equals the closed form (checked against scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from camel_vllm.policies.thompson.nig import NIGPrior, SufficientStats, pool, posterior

DATA_SETS = [
    [1.2, 0.7, 1.9, 1.1],
    [-3.0, -2.5, -2.9, -3.4, -2.2, -2.8, -3.1],
    [10.0, 12.5],
    [0.0, 0.01, -0.02, 0.005, 0.0, 0.015, -0.01, 0.02, 0.0],
]
PRIOR = NIGPrior(mean=0.5, kappa=0.8, alpha=2.0, beta=1.5)


def _fit(data: list[float], weights: list[float] | None = None) -> tuple[float, float, float]:
    s = SufficientStats((1,))
    for x, w in zip(data, weights or [1.0] * len(data), strict=False):
        s.update(0, x, w)
    return float(s.n[0]), float(s.xbar[0]), float(s.m2[0])


def _numeric_marginal_of_mu(data: list[float], prior: NIGPrior) -> tuple[float, float]:
    """Posterior mean and variance of mu by brute-force integration on a (mu, sigma^2) grid."""
    x = np.asarray(data)
    centre, spread = x.mean(), max(x.std(), 0.05) * 3 + abs(x.mean() - prior.mean)
    mu = np.linspace(centre - 6 * spread, centre + 6 * spread, 401)
    var = np.geomspace(1e-5, 1e3, 500)
    m, v = np.meshgrid(mu, var, indexing="ij")
    log_p = stats.invgamma.logpdf(v, prior.alpha, scale=prior.beta)
    log_p += stats.norm.logpdf(m, prior.mean, np.sqrt(v / prior.kappa))
    for xi in x:
        log_p += stats.norm.logpdf(xi, m, np.sqrt(v))
    p = np.exp(log_p - log_p.max())
    dv = np.gradient(var)
    p_mu = (p * dv[None, :]).sum(axis=1)
    p_mu /= p_mu.sum()
    mean = float((mu * p_mu).sum())
    return mean, float(((mu - mean) ** 2 * p_mu).sum())


@pytest.mark.parametrize("data", DATA_SETS)
def test_posterior_matches_closed_form_and_scipy_student_t(data: list[float]) -> None:
    n, xbar, m2 = _fit(data)
    post = posterior(PRIOR.mean, PRIOR.kappa, PRIOR.alpha, PRIOR.beta, np.array([n]), np.array([xbar]), np.array([m2]))
    # Closed form from the raw data (Murphy 2007, eqs. 86-89).
    x = np.asarray(data)
    k_n = PRIOR.kappa + len(x)
    mu_n = (PRIOR.kappa * PRIOR.mean + x.sum()) / k_n
    a_n = PRIOR.alpha + len(x) / 2
    b_n = (PRIOR.beta + 0.5 * ((x - x.mean()) ** 2).sum()
           + PRIOR.kappa * len(x) * (x.mean() - PRIOR.mean) ** 2 / (2 * k_n))
    assert post.kappa[0] == pytest.approx(k_n)
    assert post.mean[0] == pytest.approx(mu_n)
    assert post.alpha[0] == pytest.approx(a_n)
    assert post.beta[0] == pytest.approx(b_n)
    # Marginal of mu: Student-t(2 a_n, mu_n, sqrt(b_n / (a_n k_n))).
    t = stats.t(df=2 * a_n, loc=mu_n, scale=np.sqrt(b_n / (a_n * k_n)))
    mean, std = post.mean_std()
    assert mean[0] == pytest.approx(t.mean())
    assert std[0] == pytest.approx(t.std())
    # And both agree with brute-force integration of prior x likelihood.
    num_mean, num_var = _numeric_marginal_of_mu(data, PRIOR)
    assert mean[0] == pytest.approx(num_mean, rel=1e-3, abs=1e-4)
    assert std[0] ** 2 == pytest.approx(num_var, rel=2e-2)


def test_predictive_quantile_is_student_t() -> None:
    n, xbar, m2 = _fit(DATA_SETS[0])
    post = posterior(PRIOR.mean, PRIOR.kappa, PRIOR.alpha, PRIOR.beta, np.array([n]), np.array([xbar]), np.array([m2]))
    scale = np.sqrt(post.beta * (post.kappa + 1) / (post.alpha * post.kappa))
    expected = stats.t.ppf(0.9, 2 * post.alpha, loc=post.mean, scale=scale)
    assert post.predictive_quantile(0.9)[0] == pytest.approx(expected[0])


def test_weight_two_equals_two_observations_and_halves_add_up() -> None:
    assert _fit([1.0, 3.0, 3.0]) == pytest.approx(_fit([1.0, 3.0], [1.0, 2.0]))
    assert _fit([1.0, 3.0]) == pytest.approx(_fit([1.0, 3.0, 3.0], [1.0, 0.5, 0.5]))


def test_fractional_weight_is_pseudo_observations_in_the_posterior() -> None:
    n, xbar, m2 = _fit([2.0, 4.0], [0.25, 0.75])
    assert n == pytest.approx(1.0)
    assert xbar == pytest.approx(3.5)
    assert m2 == pytest.approx(0.25 * 1.5**2 + 0.75 * 0.5**2)
    post = posterior(0.0, 1.0, 1.0, 1.0, np.array([n]), np.array([xbar]), np.array([m2]))
    assert post.alpha[0] == pytest.approx(1.5)  # alpha grows by half the total weight
    assert post.kappa[0] == pytest.approx(2.0)


def test_zero_weight_is_ignored() -> None:
    assert _fit([1.0, 5.0], [1.0, 0.0]) == pytest.approx((1.0, 1.0, 0.0))


def test_pool_equals_statistics_of_the_concatenated_data() -> None:
    parts = [[1.0, 2.0, 4.0], [10.0], [], [3.0, 3.5]]
    s = SufficientStats((len(parts),))
    for i, part in enumerate(parts):
        for x in part:
            s.update(i, x)
    n, xbar, m2 = pool(s.n, s.xbar, s.m2)
    everything = [x for part in parts for x in part]
    assert n == pytest.approx(len(everything))
    assert xbar == pytest.approx(np.mean(everything))
    assert m2 == pytest.approx(((np.asarray(everything) - np.mean(everything)) ** 2).sum())


def test_thompson_draws_follow_the_marginal_of_mu() -> None:
    n, xbar, m2 = _fit(DATA_SETS[0])
    shape = (200_000,)
    post = posterior(PRIOR.mean, PRIOR.kappa, PRIOR.alpha, PRIOR.beta,
                     np.full(shape, n), np.full(shape, xbar), np.full(shape, m2))
    draws = post.sample_means(np.random.default_rng(0))
    mean, std = post.mean_std()
    assert draws.mean() == pytest.approx(mean[0], abs=3e-3)
    assert draws.std() == pytest.approx(std[0], rel=2e-2)


def test_state_round_trip_and_rejects_bad_shapes() -> None:
    s = SufficientStats((2, 3))
    s.update((1, 2), 4.0, 0.5)
    other = SufficientStats((2, 3))
    other.load(s.to_dict())
    assert np.array_equal(other.n, s.n) and np.array_equal(other.xbar, s.xbar)
    with pytest.raises(ValueError):
        SufficientStats((3, 3)).load(s.to_dict())
    bad = s.to_dict()
    bad["n"][0][0] = -1.0
    with pytest.raises(ValueError):
        SufficientStats((2, 3)).load(bad)
