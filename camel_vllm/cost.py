"""Per-request cost functions: what the policies minimise.

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
from typing import Protocol

import numpy as np

from camel_vllm.types import FinishedRequest

#: Floor on EDP before the log (J*s), so a request measured at 0 J (no sensor) stays finite.
EDP_FLOOR_JS = 1e-9
#: Requests seen before the size adjustment is applied (3 coefficients need a few points;
#: before that the cost is the plain log EDP).
SIZE_FIT_MIN_REQUESTS = 20
#: Ridge penalty on the slopes (in units of requests): a weak pull towards "size does not
#: matter" that only counts while the fit has few requests.
SIZE_FIT_RIDGE = 1.0


class CostFunction(Protocol):
    name: str

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float: ...


def log_edp(energy_j: float, latency_s: float) -> float:
    """ln(max(energy_j * latency_s, EDP_FLOOR_JS))."""
    return math.log(max(energy_j * latency_s, EDP_FLOOR_JS))


def size_features(request: FinishedRequest) -> np.ndarray:
    """[log(1 + prompt tokens), log(1 + output tokens)]: the arm-independent covariates."""
    return np.array([math.log1p(max(0, request.prompt_tokens)), math.log1p(max(0, request.output_tokens))])


class LogEDPCost:
    """cost = ln(max(energy_j * latency_s, EDP_FLOOR_JS)) (no size adjustment)."""

    name = "edp-raw"

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float:
        return log_edp(energy_j, latency_s)


class SizeAdjustedLogEDPCost:
    """Log EDP minus the fitted effect of request size (a control variate, module docstring).

    Keeps the running sums of an ordinary least-squares fit of log EDP on [1, x] (x =
    :func:`size_features`), pooled over all requests and arms: 3 x 3 normal equations,
    solved per request (microseconds). ``cost = log EDP - slopes . (x - mean x)``.
    """

    name = "edp"

    def __init__(self, *, min_requests: int = SIZE_FIT_MIN_REQUESTS, ridge: float = SIZE_FIT_RIDGE) -> None:
        self.min_requests = int(min_requests)
        self.ridge = float(ridge)
        self._xtx = np.zeros((3, 3))
        self._xty = np.zeros(3)
        self._n = 0

    @property
    def requests_seen(self) -> int:
        return self._n

    def slopes(self) -> np.ndarray:
        """Fitted [prompt, output] slopes of log EDP (zeros before ``min_requests``)."""
        if self._n < self.min_requests:
            return np.zeros(2)
        a = self._xtx + np.diag([0.0, self.ridge, self.ridge])
        try:
            coef = np.linalg.solve(a, self._xty)
        except np.linalg.LinAlgError:
            return np.zeros(2)
        return coef[1:]

    def feature_mean(self) -> np.ndarray:
        if self._n == 0:
            return np.zeros(2)
        return self._xtx[0, 1:] / self._n

    def adjust(self, value: float, features: np.ndarray) -> float:
        """``value`` (a log EDP) with the size effect removed, at the current fit."""
        return value - float(self.slopes().dot(features - self.feature_mean()))

    def update(self, value: float, features: np.ndarray) -> None:
        row = np.concatenate(([1.0], features))
        self._xtx += np.outer(row, row)
        self._xty += row * value
        self._n += 1

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float:
        value = log_edp(energy_j, latency_s)
        features = size_features(request)
        cost = self.adjust(value, features)
        self.update(value, features)
        return cost


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


def make_cost(name: str, alpha: float = 0.5) -> CostFunction:
    """``edp`` (size-adjusted log EDP), ``edp-raw`` (plain log EDP) or ``weighted``."""
    if name == "edp":
        return SizeAdjustedLogEDPCost()
    if name == "edp-raw":
        return LogEDPCost()
    if name == "weighted":
        return WeightedCost(alpha)
    raise ValueError(f"unknown cost {name!r} (known: edp, edp-raw, weighted)")
