"""The cost a policy minimises, as a type: what the controller's cost function looks like and
the log-EDP scale it works on. The implementations are the controller's
(:mod:`camel_vllm.control.cost`).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from camel_vllm.core.events import FinishedRequest

#: Floor on EDP before the log (J*s), so a request measured at 0 J (no sensor) stays finite.
EDP_FLOOR_JS = 1e-9


class CostFunction(Protocol):
    """A finished request's cost (lower is better) from its energy (J) and latency (s)."""

    name: str

    def __call__(self, energy_j: float, latency_s: float, request: FinishedRequest) -> float: ...

    def projected(self, energy_j: np.ndarray, latency_s: np.ndarray, edp_js: np.ndarray) -> np.ndarray:
        """The same cost, to rank arms by, from a policy's projections of the mean request under
        each arm: its energy (J), latency (s) and mean EDP (J*s; the mean of the product, which a
        projection of energy and latency alone does not give)."""
        ...


def log_edp(energy_j: float, latency_s: float) -> float:
    """ln(max(energy_j * latency_s, EDP_FLOOR_JS))."""
    return math.log(max(energy_j * latency_s, EDP_FLOOR_JS))
