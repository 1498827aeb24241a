"""The controller's per-request cost functions: what the policies minimise (their contract:
:class:`camel_vllm.core.cost.CostFunction`).

``edp``: the request's energy-delay product, energy_j x latency_s (J*s), modelled on a log
scale because per-request EDP is heavy-tailed and multiplicative (a request twice as long
costs about four times the EDP): log EDP is close to Gaussian, and arm effects become
additive shifts that a Gaussian posterior can learn.

Request size as a control variate (default for ``edp``, :class:`SizeAdjustedLogEDPCost`).
Most of the spread of per-request log EDP is the request's size, not the arm: on the Azure
conversation trace (emulated Orin, 0.5 req/s) log EDP has a standard deviation of 1.52, a
least-squares fit on log prompt and log output tokens leaves 0.47, and the gap between the
best and the default arm is 0.21. Token counts do not depend on the arm, so subtracting
their fitted effect removes noise without biasing the comparison of arms: with
x = [log(1 + prompt_tokens), log(1 + output_tokens)] and an online ridge-regularised
least-squares fit log EDP ~ b0 + b.x pooled over every request (every arm), the cost is
log EDP - b.(x - xbar0), where xbar0 is the running mean of x: the residual plus the
intercept evaluated at the mean request, so costs stay on the log J*s scale. Arm effects are
additive shifts on the log scale and are left in the intercept, so their ordering is kept
(the slopes are estimated with every arm mixed in; as long as the arm choice does not
depend on the request's own size, the slopes are not biased by it). The fit is updated
*after* the cost is computed (no request sees its own value). ``make_cost("edp-raw")``
(:class:`LogEDPCost`) switches the adjustment off: plain log EDP. Numbers: docs/policies.md.

``weighted``: Camel's cost, alpha * energy / energy_ref + (1 - alpha) * latency / latency_ref
(arXiv 2508.09173; alpha = 0.5 there). The references are running means over every
request seen so far, so the two terms are on comparable scales without a calibration run.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from camel_vllm.core.cost import CostFunction, log_edp
from camel_vllm.core.events import FinishedRequest

#: Requests seen before the size adjustment is applied (3 coefficients need a few points;
#: before that the cost is the plain log EDP).
SIZE_FIT_MIN_REQUESTS = 20
#: Ridge penalty on the slopes (in units of requests): a weak pull towards "size does not
#: matter" that only counts while the fit has few requests.
SIZE_FIT_RIDGE = 1.0


def size_features(request: FinishedRequest) -> np.ndarray:
    """[log(1 + prompt tokens), log(1 + output tokens)]: the arm-independent covariates."""
    return np.array([math.log1p(max(0, request.prompt_tokens)), math.log1p(max(0, request.output_tokens))])


class LogEDPCost:
    """cost = ln(max(energy_j * latency_s, EDP_FLOOR_JS)) (no size adjustment)."""

    name = "edp-raw"

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float:
        return log_edp(energy_j, latency_s)

    def projected(self, energy_j: np.ndarray, latency_s: np.ndarray, edp_js: np.ndarray) -> np.ndarray:
        """Projections rank by mean EDP (the log is monotone; a mean of logs needs the spread; the
        size adjustment of :class:`SizeAdjustedLogEDPCost` does not depend on the arm)."""
        return edp_js


class SizeAdjustedLogEDPCost(LogEDPCost):
    """Log EDP minus the fitted effect of request size (a control variate, module docstring).

    Keeps the running sums of a ridge least-squares fit of log EDP on [1, x] (x =
    :func:`size_features`), pooled over all requests and arms: the 3 x 3 normal equations
    A c = t with A = sum r r' + diag(0, ridge, ridge), t = sum r y, r = [1, x]. Each request
    adds to 9 sums (O(d^2), d = 3) and the slopes are solved in closed form (the adjugate of
    the symmetric A: 6 cofactors), once per new request, in plain floats: ~3 us a request,
    where ``numpy.linalg.solve`` on 3 x 3 arrays cost ~25 us (its fixed per-call overhead),
    the largest piece of the controller's work for a finishing request
    (benchmarks/overhead.py). Same results as ``numpy.linalg.solve`` up to float rounding
    (tests/core/test_cost.py). ``cost = log EDP - slopes . (x - mean x)``.
    """

    name = "edp"

    def __init__(self, *, min_requests: int = SIZE_FIT_MIN_REQUESTS, ridge: float = SIZE_FIT_RIDGE) -> None:
        self.min_requests = int(min_requests)
        self.ridge = float(ridge)
        self._n = 0
        # sum r r' (upper triangle, r = [1, x1, x2]; the [0, 0] entry is n) and sum r y.
        self._s1 = self._s2 = self._s11 = self._s12 = self._s22 = 0.0
        self._t0 = self._t1 = self._t2 = 0.0
        self._slopes: tuple[float, float] | None = (0.0, 0.0)  # None: stale, re-solve

    @property
    def requests_seen(self) -> int:
        return self._n

    def slopes(self) -> np.ndarray:
        """Fitted [prompt, output] slopes of log EDP (zeros before ``min_requests``)."""
        return np.array(self._current_slopes())

    def feature_mean(self) -> np.ndarray:
        return np.array(self._feature_mean())

    def adjust(self, value: float, features: Sequence[float]) -> float:
        """``value`` (a log EDP) with the size effect removed, at the current fit."""
        b1, b2 = self._current_slopes()
        m1, m2 = self._feature_mean()
        return value - (b1 * (float(features[0]) - m1) + b2 * (float(features[1]) - m2))

    def update(self, value: float, features: Sequence[float]) -> None:
        x1, x2 = float(features[0]), float(features[1])
        self._n += 1
        self._s1 += x1
        self._s2 += x2
        self._s11 += x1 * x1
        self._s12 += x1 * x2
        self._s22 += x2 * x2
        self._t0 += value
        self._t1 += x1 * value
        self._t2 += x2 * value
        self._slopes = None

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float:
        value = log_edp(energy_j, latency_s)
        features = (math.log1p(max(0, request.prompt_tokens)), math.log1p(max(0, request.output_tokens)))
        cost = self.adjust(value, features)
        self.update(value, features)
        return cost

    # ------------------------------------------------------------------ internals
    def _feature_mean(self) -> tuple[float, float]:
        if self._n == 0:
            return 0.0, 0.0
        return self._s1 / self._n, self._s2 / self._n

    def _current_slopes(self) -> tuple[float, float]:
        if self._n < self.min_requests:
            return 0.0, 0.0
        if self._slopes is None:
            self._slopes = self._solve_slopes()
        return self._slopes

    def _solve_slopes(self) -> tuple[float, float]:
        """Slopes of A c = t by the adjugate of the symmetric 3 x 3 A; zeros if A is singular."""
        a, b, c = float(self._n), self._s1, self._s2
        d, e, f = self._s11 + self.ridge, self._s12, self._s22 + self.ridge
        c00 = d * f - e * e
        c01 = c * e - b * f
        c02 = b * e - d * c
        det = a * c00 + b * c01 + c * c02
        if det == 0.0 or not math.isfinite(det):
            return 0.0, 0.0
        c11 = a * f - c * c
        c12 = b * c - a * e
        c22 = a * d - b * b
        t0, t1, t2 = self._t0, self._t1, self._t2
        return (c01 * t0 + c11 * t1 + c12 * t2) / det, (c02 * t0 + c12 * t1 + c22 * t2) / det


class WeightedCost:
    """Camel's alpha-weighted normalised energy and latency."""

    name = "weighted"

    def __init__(self, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self._n = 0
        self._energy_mean_j = 0.0
        self._latency_mean_s = 0.0

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float:
        self._n += 1
        self._energy_mean_j += (energy_j - self._energy_mean_j) / self._n
        self._latency_mean_s += (latency_s - self._latency_mean_s) / self._n
        e_ref = self._energy_mean_j if self._energy_mean_j > 0 else 1.0
        l_ref = self._latency_mean_s if self._latency_mean_s > 0 else 1.0
        return self.alpha * energy_j / e_ref + (1.0 - self.alpha) * latency_s / l_ref

    def projected(self, energy_j: np.ndarray, latency_s: np.ndarray, edp_js: np.ndarray) -> np.ndarray:
        """The weighted sum of the projections, on the references finished requests gave (before
        any: the projections' own medians)."""
        e_ref = self._energy_mean_j if self._energy_mean_j > 0 else float(np.median(energy_j))
        l_ref = self._latency_mean_s if self._latency_mean_s > 0 else float(np.median(latency_s))
        return self.alpha * energy_j / e_ref + (1.0 - self.alpha) * latency_s / l_ref


def make_cost(name: str, alpha: float = 0.5) -> CostFunction:
    """``edp`` (size-adjusted log EDP), ``edp-raw`` (plain log EDP) or ``weighted``."""
    if name == "edp":
        return SizeAdjustedLogEDPCost()
    if name == "edp-raw":
        return LogEDPCost()
    if name == "weighted":
        return WeightedCost(alpha)
    raise ValueError(f"unknown cost {name!r} (known: edp, edp-raw, weighted)")
