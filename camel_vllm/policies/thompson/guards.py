"""The arms ``camel-ts`` leaves out before its Thompson draw: the queue guard and the SLO guard.

Queue guard: under continuous batching a batch cap only bounds admission, and the waiting a
small cap causes is charged to the arms in force later, so a small cap's posterior cannot
learn it; caps below the requests in the engine are left out while a larger one is
available. SLO guard: the posterior-predictive latency quantile of every arm, which the one SLO
filter (:func:`camel_vllm.policies.slo.filter.slo_allowed`) judges. Neither ever leaves no arm.
"""

from __future__ import annotations


import numpy as np

from camel_vllm.policies.thompson.nig import SufficientStats, pool, posterior


def queue_allowed(idx: np.ndarray, caps: np.ndarray, demand: int) -> np.ndarray:
    """The arms of ``idx`` whose batch cap (``caps[arm]``) admits all ``demand`` requests in
    the engine (running + waiting); without such an arm, the largest caps. ``demand`` 0:
    nothing is known (no snapshot yet), all of ``idx``."""
    if demand <= 0:
        return idx
    caps = caps[idx]
    ok = caps >= demand
    if ok.any():
        return idx[ok]
    return idx[caps == caps.max()]


def latency_quantiles(latency: SufficientStats, row: int, quantile: float, min_evidence: float) -> np.ndarray:
    """Posterior-predictive ``quantile`` of log latency per arm in context ``row``; NaN
    without evidence.

    A context's own statistics are used once they carry ``min_evidence``; before that the
    arm's statistics pooled over contexts, if those do.
    """
    n_p, xbar_p, m2_p = pool(latency.n, latency.xbar, latency.m2)
    local = latency.n[row] >= min_evidence
    n = np.where(local, latency.n[row], n_p)
    xbar = np.where(local, latency.xbar[row], xbar_p)
    m2 = np.where(local, latency.m2[row], m2_p)
    # Weak prior centred on the data; noise scale from the pooled within-arm spread.
    dof = np.maximum(n_p - 1.0, 0.0).sum()
    var = float(m2_p.sum() / dof) if dof >= 1.0 else 0.1
    alpha0 = 1.0
    post = posterior(xbar, 1e-3, alpha0, (alpha0 + 1.0) * max(var, 1e-6), n, xbar, m2)
    q = post.predictive_quantile(quantile)
    return np.where(n >= min_evidence, q, np.nan)
