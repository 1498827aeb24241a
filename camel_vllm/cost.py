"""Per-request cost functions: what the policies minimise.

``edp``: the request's energy-delay product, energy_j x latency_s (J*s), modelled on a log
scale because per-request EDP is heavy-tailed and multiplicative (a request twice as long
costs about four times the EDP): log EDP is close to Gaussian, and arm effects become
additive shifts that a Gaussian posterior can learn.

``weighted``: Camel's cost, alpha * energy / energy_ref + (1 - alpha) * latency / latency_ref
(arXiv 2508.09173; alpha = 0.5 there). The references are running means over every
request seen so far, so the two terms are on comparable scales without a calibration run.
"""

from __future__ import annotations

import math
from typing import Protocol

from camel_vllm.types import FinishedRequest

#: Floor on EDP before the log (J*s), so a request measured at 0 J (no sensor) stays finite.
EDP_FLOOR_JS = 1e-9


class CostFunction(Protocol):
    name: str

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float: ...


class LogEDPCost:
    """cost = ln(max(energy_j * latency_s, EDP_FLOOR_JS))."""

    name = "edp"

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float:
        return math.log(max(energy_j * latency_s, EDP_FLOOR_JS))


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
    if name == "edp":
        return LogEDPCost()
    if name == "weighted":
        return WeightedCost(alpha)
    raise ValueError(f"unknown cost {name!r} (known: edp, weighted)")
