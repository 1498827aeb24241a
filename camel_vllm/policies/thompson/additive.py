"""The additive grid prior of ``camel-ts``: cost(f, b) ~ mu + g(frequency) + h(batch cap).

Fitted by backfitting to the posterior means of the arms a context has tried, it adds up to
a capped number of pseudo-observations at its prediction to every arm's prior, weighted by
how well the additive model fits (empirical Bayes). At low load one pull per row and column
teaches all arms; where an overloaded corner breaks additivity the model steps aside.
docs/policies.md has the derivation and the tuning of the caps.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: Weight of the additive grid model before its fit has residual degrees of freedom.
INITIAL_ADDITIVE_WEIGHT = 0.2
#: Backfitting sweeps of the additive model (it is a prior: an approximate fit will do).
BACKFIT_SWEEPS = 3


class AdditiveGrid:
    """The arms as cells of a (frequency, batch cap) grid, and the additive model over it.

    ``freq_key`` is each arm's frequency (any number standing for a batch-only arm),
    ``batches`` its batch cap. When arm index = f * B + b for the whole grid (``full``),
    the fit works on an (F, B) matrix; otherwise on index lists.
    """

    def __init__(self, freq_key: np.ndarray, batches: Sequence[int]) -> None:
        num_arms = len(freq_key)
        self.f_idx = np.searchsorted(np.unique(freq_key), freq_key)
        self.b_idx = np.searchsorted(np.unique(batches), np.asarray(batches, dtype=float))
        self.shape = (int(self.f_idx.max()) + 1, int(self.b_idx.max()) + 1)
        nf, nb = self.shape
        self.full = bool(
            num_arms == nf * nb
            and np.array_equal(self.f_idx * nb + self.b_idx, np.arange(num_arms))
        )

    def with_prior(self, mean_p: Any, kappa_p: Any, n_c: np.ndarray, xbar_c: np.ndarray, cap: float, *,
                   m2_cells: float, dof: float) -> tuple[Any, Any]:
        """Add the additive model's prediction to every arm's prior (mean, kappa).

        Fitted to the posterior means of the arms tried in the context (``n_c`` > 0). Its weight
        (pseudo-observations) is estimated like the sharing strength: sigma^2 / tau^2 with tau^2
        the residual variance of the fit beyond sampling noise (degrees-of-freedom corrected),
        capped at ``cap``. ``m2_cells``/``dof``: the pooled within-cell noise.
        """
        tried = n_c > 0.0
        count = int(np.count_nonzero(tried))
        if count < 2:
            return mean_p, kappa_p
        post_mean = (kappa_p * mean_p + n_c * xbar_c) / (kappa_p + n_c)
        w = tried * 1.0
        mu = float(w.dot(post_mean)) / count
        nf, nb = self.shape
        if self.full:  # arm index = f * B + b: row/column sums of a (F, B) matrix
            wm = w.reshape(nf, nb)
            resid0 = wm * (post_mean.reshape(nf, nb) - mu)
            wf, wb = wm.sum(axis=1), wm.sum(axis=0)
            inv_f, inv_b = 1.0 / np.maximum(wf, 1e-12), 1.0 / np.maximum(wb, 1e-12)
            h = np.zeros(nb)
            for _ in range(BACKFIT_SWEEPS):
                g = (resid0 - wm * h).sum(axis=1) * inv_f
                h = (resid0 - wm * g[:, None]).sum(axis=0) * inv_b
            pred = mu + (g[:, None] + h[None, :]).ravel()
        else:
            f_idx, b_idx = self.f_idx, self.b_idx
            wf = np.bincount(f_idx, w, nf)
            wb = np.bincount(b_idx, w, nb)
            h = np.zeros(nb)
            for _ in range(BACKFIT_SWEEPS):
                g = np.bincount(f_idx, w * (post_mean - mu - h[b_idx]), nf) / np.maximum(wf, 1e-12)
                h = np.bincount(b_idx, w * (post_mean - mu - g[f_idx]), nb) / np.maximum(wb, 1e-12)
            pred = mu + g[f_idx] + h[b_idx]
        params = 1 + int((wf > 0).sum()) - 1 + int((wb > 0).sum()) - 1
        if count - params < 2 or dof < 1.0 or m2_cells <= 0.0:
            weight = min(cap, INITIAL_ADDITIVE_WEIGHT)
        else:
            sigma2 = m2_cells / dof
            resid = (post_mean - pred)[tried]
            excess = resid * resid * (count / (count - params)) - sigma2 / n_c[tried]
            tau2 = max(float(excess.sum()) / count, sigma2 / cap)
            weight = min(cap, sigma2 / tau2)
        # An arm off the fitted rows/columns has only a partial prediction (the missing
        # effect taken as average), trusted as much as the spread of the tried arms allows:
        # sigma^2 / var(tried means) pseudo-observations at most.
        covered = (wf[self.f_idx] > 0.0) & (wb[self.b_idx] > 0.0)
        weak = min(weight, INITIAL_ADDITIVE_WEIGHT)
        dev = post_mean[tried] - mu
        spread2 = float(dev.dot(dev)) / count
        if dof >= 1.0 and spread2 > 0.0:
            weak = min(weak, (m2_cells / dof) / spread2)
        w_arm = np.where(covered, weight, weak)
        return (kappa_p * mean_p + w_arm * pred) / (kappa_p + w_arm), kappa_p + w_arm
