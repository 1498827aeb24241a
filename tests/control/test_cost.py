"""The request-size control variate of the ``edp`` cost (camel_vllm/control/cost.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from camel_vllm.control.cost import LogEDPCost, SizeAdjustedLogEDPCost, WeightedCost, make_cost
from camel_vllm.core.events import FinishedRequest


def _request(i: int, prompt: int, output: int) -> FinishedRequest:
    return FinishedRequest(request_id=str(i), arrival_s=0.0, finish_s=1.0, prompt_tokens=prompt, output_tokens=output)


def _synthetic(seed: int = 0, n: int = 3000):
    """Log EDP = arm effect + 0.4 log prompt + 1.5 log output + noise(0.2); arms 0..2."""
    rng = np.random.default_rng(seed)
    arm_effect = np.array([0.0, 0.15, 0.3])
    rows = []
    for i in range(n):
        arm = int(rng.integers(3))
        prompt = int(rng.lognormal(6.0, 1.2)) + 1
        output = int(rng.lognormal(5.0, 1.0)) + 1
        log_edp = 1.0 + arm_effect[arm] + 0.4 * math.log1p(prompt) + 1.5 * math.log1p(output) + rng.normal(0, 0.2)
        rows.append((arm, _request(i, prompt, output), math.exp(log_edp)))
    return arm_effect, rows


def _costs(cost_fn, rows):
    # energy x latency = EDP: latency 1 s, energy = EDP
    return np.array([cost_fn(edp, 1.0, req) for _, req, edp in rows]), np.array([arm for arm, _, _ in rows])


def test_size_adjustment_removes_size_effect_and_keeps_arm_order() -> None:
    arm_effect, rows = _synthetic()
    raw, arms = _costs(LogEDPCost(), rows)
    adj, _ = _costs(SizeAdjustedLogEDPCost(), rows)
    burn = 200  # the fit needs some requests
    raw, adj, arms = raw[burn:], adj[burn:], arms[burn:]

    def within_arm_var(x: np.ndarray) -> float:
        return float(np.mean([x[arms == a].var() for a in range(3)]))

    # Size explains most of the raw spread; after the adjustment the noise is near 0.2^2.
    assert within_arm_var(raw) > 10 * within_arm_var(adj)
    assert within_arm_var(adj) < 1.5 * 0.2**2
    means = np.array([adj[arms == a].mean() for a in range(3)])
    assert list(np.argsort(means)) == [0, 1, 2]
    # Arm differences are preserved (additive shifts on the log scale).
    np.testing.assert_allclose(means - means[0], arm_effect - arm_effect[0], atol=0.03)
    # ... and the cost stays on the log J*s scale: its mean is the raw mean.
    assert abs(adj.mean() - raw.mean()) < 0.1


def test_size_adjustment_recovers_slopes_and_waits_for_data() -> None:
    _, rows = _synthetic(seed=1)
    cost = SizeAdjustedLogEDPCost(min_requests=20)
    first = cost(rows[0][2], 1.0, rows[0][1])
    assert first == pytest.approx(math.log(rows[0][2]))  # no fit yet: plain log EDP
    for _, req, edp in rows[1:]:
        cost(edp, 1.0, req)
    np.testing.assert_allclose(cost.slopes(), [0.4, 1.5], atol=0.05)
    assert cost.requests_seen == len(rows)


def test_size_adjustment_does_not_see_its_own_request() -> None:
    cost = SizeAdjustedLogEDPCost(min_requests=1)
    req_small, req_big = _request(0, 10, 10), _request(1, 1000, 1000)
    cost(100.0, 1.0, req_small)
    cost(1000.0, 1.0, req_big)
    before = (cost.slopes().copy(), cost.feature_mean().copy())
    value = cost(500.0, 1.0, req_big)
    features = np.array([math.log1p(1000), math.log1p(1000)])
    assert value == pytest.approx(math.log(500.0) - before[0].dot(features - before[1]))


def test_make_cost_names() -> None:
    assert isinstance(make_cost("edp"), SizeAdjustedLogEDPCost)
    assert isinstance(make_cost("edp-raw"), LogEDPCost)
    assert isinstance(make_cost("weighted", 0.3), WeightedCost)
    assert make_cost("edp-raw")(2.0, 3.0, _request(0, 1, 1)) == pytest.approx(math.log(6.0))
    with pytest.raises(ValueError, match="unknown cost 'joules'"):
        make_cost("joules")


class _NumpySizeFit:
    """The first implementation of the fit (3 x 3 arrays, ``numpy.linalg.solve`` per request):
    the reference the closed-form one must match up to float rounding."""

    def __init__(self, min_requests: int, ridge: float) -> None:
        self.min_requests, self.ridge = min_requests, ridge
        self.xtx, self.xty, self.n = np.zeros((3, 3)), np.zeros(3), 0

    def __call__(self, value: float, features: np.ndarray) -> float:
        slopes = np.zeros(2)
        if self.n >= self.min_requests:
            a = self.xtx + np.diag([0.0, self.ridge, self.ridge])
            try:
                slopes = np.linalg.solve(a, self.xty)[1:]
            except np.linalg.LinAlgError:
                pass
        mean = self.xtx[0, 1:] / self.n if self.n else np.zeros(2)
        cost = value - float(slopes.dot(features - mean))
        row = np.concatenate(([1.0], features))
        self.xtx += np.outer(row, row)
        self.xty += row * value
        self.n += 1
        return cost


@pytest.mark.parametrize("min_requests, ridge", [(20, 1.0), (1, 1.0), (5, 0.0)])
def test_closed_form_fit_matches_numpy_solve(min_requests: int, ridge: float) -> None:
    _, rows = _synthetic(seed=2, n=3000)
    rows.insert(0, (0, _request(-1, 7, 7), 3.0))  # a repeated size first
    rows.insert(0, (0, _request(-2, 7, 7), 2.0))
    fast = SizeAdjustedLogEDPCost(min_requests=min_requests, ridge=ridge)
    reference = _NumpySizeFit(min_requests, ridge)
    for _, req, edp in rows:
        expected = reference(math.log(edp), np.array([math.log1p(req.prompt_tokens), math.log1p(req.output_tokens)]))
        assert fast(edp, 1.0, req) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(fast.feature_mean(), reference.xtx[0, 1:] / reference.n, rtol=1e-12)
