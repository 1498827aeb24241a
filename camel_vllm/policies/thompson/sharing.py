"""Sharing across contexts (a hierarchical prior, empirical Bayes) for ``camel-ts``.

A context's prior for an arm is the posterior that arm has earned in every *other* context,
shifted by the context's level offset (high load makes every arm dearer) and discounted to
``strength`` pseudo-observations. ``strength`` = sigma^2 / tau^2, the noise variance over the
between-context variance of arm effects, estimated by the method of moments and capped:
contexts that agree pool their evidence, contexts whose best arms differ soon stop sharing.
docs/policies.md has the derivation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from camel_vllm.policies.thompson.nig import SufficientStats

#: Sharing strength before any arm has been seen in both a context and the others.
INITIAL_SHARE_STRENGTH = 2.0


def shared_prior(
    base: tuple[Any, Any, Any, Any],
    pooled: SufficientStats,
    n_c: np.ndarray,
    xbar_c: np.ndarray,
    m2_c: np.ndarray,
    *,
    cap: float,
    m2_cells: float,
    dof: float,
) -> tuple[Any, Any, Any, Any]:
    """The prior (mean, kappa, alpha, beta) of every arm in one context: the other contexts'
    posterior over the ``base`` prior, discounted to the empirical-Bayes sharing strength.

    ``pooled`` holds every context's statistics per arm, ``n_c``/``xbar_c``/``m2_c`` this
    context's; ``m2_cells``/``dof`` are the within-cell sum of squares and its degrees of
    freedom over all cells (the pooled noise); ``cap`` is ``share_strength``.
    """
    mean0, kappa0, alpha0, beta0 = base
    # Other contexts' statistics per arm = pooled minus this row (Chan's formula reversed;
    # an arm no other context has tried gets n_o = 0 and so adds nothing below).
    n_p = pooled.n
    n_o = n_p - n_c
    has_o = n_o > 1e-9
    safe_o = np.where(has_o, n_o, 1.0)
    xbar_o = (n_p * pooled.xbar - n_c * xbar_c) / safe_o
    dev = xbar_c - xbar_o
    m2_o = np.maximum(pooled.m2 - m2_c - (n_c * n_o / np.maximum(n_p, 1e-12)) * dev * dev, 0.0)
    # Level offset of this context against the others, on arms both have seen; each arm
    # weighs n_c / (n_c + 1) (about one vote per arm), so the arm the context plays most
    # does not decide alone whether the contexts agree.
    w = n_c / (n_c + 1.0) * has_o
    w_sum = float(w.sum())
    offset = float(w.dot(dev)) / (w_sum + 1.0)
    strength = sharing_strength(w, dev - offset, n_c, safe_o, w_sum, cap=cap, m2_cells=m2_cells, dof=dof)
    # The others' posterior, discounted to at most `strength` pseudo-observations.
    eff = np.minimum(n_o, strength)
    kappa_s = kappa0 + n_o
    shift = xbar_o - mean0
    mean_s = mean0 + (n_o / kappa_s) * shift + offset
    excess_beta = 0.5 * m2_o + (0.5 * kappa0) * n_o * shift * shift / kappa_s
    return mean_s, kappa0 + eff, alpha0 + 0.5 * eff, beta0 + (eff / safe_o) * excess_beta


def sharing_strength(w: np.ndarray, resid: np.ndarray, n_c: np.ndarray, n_o: np.ndarray, w_sum: float, *,
                     cap: float, m2_cells: float, dof: float) -> float:
    """Empirical-Bayes strength of the shared prior for one context (pseudo-observations).

    Method of moments on the arms this context and the others have both tried: tau^2 =
    weighted mean of (residual^2 - sigma^2 (1/n_c + 1/n_o)), the between-context variance
    of an arm's cost beyond the context's level offset; strength = sigma^2 / tau^2, capped
    at ``cap`` (tau^2 floored there). Contexts that agree share a lot; contexts whose best
    arms differ share almost nothing.
    """
    if w_sum < 1.0 or dof < 1.0 or m2_cells <= 0.0:
        return min(cap, INITIAL_SHARE_STRENGTH)
    sigma2 = m2_cells / dof
    excess = resid * resid - sigma2 * (1.0 / np.maximum(n_c, 1e-12) + 1.0 / n_o)
    tau2 = max(float(w.dot(excess)) / w_sum, sigma2 / cap)
    return min(cap, sigma2 / tau2)
