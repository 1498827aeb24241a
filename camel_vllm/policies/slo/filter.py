"""The SLO's one measure and one filter: a finished request's value of the SLO metric, and which
arms a projected value allows.

Each SLO-aware policy projects the metric its own way (``slo``: an iteration-time model of the
requests present; ``camel``: its queue projection at the posterior mean; ``camel-ts``: the
posterior-predictive latency quantile), then keeps the arms this filter allows; ``slo`` around
an inner policy hands the inner one only those arms.
"""

from __future__ import annotations

import numpy as np

from camel_vllm.core.events import RequestOutcome


def slo_metric_s(outcome: RequestOutcome, metric: str) -> float | None:
    """The request's SLO metric in seconds (``None`` if it cannot be computed): ``e2e`` its
    latency, ``ttft`` its time to first token, ``tpot`` its time per output token after the
    first (``None`` with fewer than two)."""
    request = outcome.request
    if metric == "e2e":
        return request.latency_s
    if metric == "ttft":
        return request.ttft_s
    if metric == "tpot":
        if request.first_token_s is None or request.output_tokens < 2:
            return None
        return max(0.0, request.finish_s - request.first_token_s) / (request.output_tokens - 1)
    raise ValueError(f"unknown SLO metric {metric!r}")


def slo_allowed(idx: np.ndarray, values: np.ndarray, limit: float) -> np.ndarray:
    """The arms of ``idx`` whose projected SLO metric ``values[arm]`` is within ``limit`` (an
    arm without a projection, NaN, is allowed: no evidence against it); when none is, the arms
    with the lowest projection. Never empty for a non-empty ``idx``."""
    projected = values[idx]
    ok = ~(projected > limit)
    if ok.any():
        return idx[ok]
    return idx[projected == np.nanmin(projected)]
