"""Bayesian linear regression with a Gaussian prior, known noise scale and slow forgetting.

Model: ``y = x . theta + eps`` with ``eps ~ N(0, sigma^2 / w)`` for an observation of weight
``w``, prior ``theta ~ N(mu0, Sigma0)``. The posterior is Gaussian (Bishop, "Pattern
Recognition and Machine Learning", 2006, eqs. 3.50-3.51)::

    Lambda_n = Sigma0^-1 + X' W X / sigma^2
    mu_n     = Lambda_n^-1 (Sigma0^-1 mu0 + X' W y / sigma^2)

Only the sufficient statistics ``X' W X``, ``X' W y``, ``y' W y`` and the weight sum are
kept, so adding observations is a rank-k update and the prior can be changed at any time
without replaying data. ``forget`` multiplies the statistics by a factor in (0, 1]: an
exponential memory, so the fit follows slow drift (thermal, power mode). ``sigma^2`` is the
residual variance of the data under the current fit (a point estimate, floored), so draws
are as wide as the data's own scatter.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from camel_vllm.policies.state_values import array, check_statistics, item, number

#: Floor on the noise variance (relative units when rows are scaled by 1/y): 1% noise.
MIN_NOISE_VAR = 1e-4


class BayesLinReg:
    """One Gaussian linear model over ``dim`` features; see the module docstring."""

    def __init__(self, dim: int, prior_mean: np.ndarray | None = None, prior_var: np.ndarray | None = None,
                 *, noise_var: float | None = None) -> None:
        self.dim = int(dim)
        self.xtx = np.zeros((dim, dim))
        self.xty = np.zeros(dim)
        self.yty = 0.0
        self.weight = 0.0
        self.fixed_noise_var = noise_var
        self._last_mean: np.ndarray | None = None
        self.set_prior(np.zeros(dim) if prior_mean is None else prior_mean,
                       np.full(dim, 1e6) if prior_var is None else prior_var)

    # ------------------------------------------------------------------ data
    def set_prior(self, mean: np.ndarray, var: np.ndarray) -> None:
        """Replace the prior (diagonal covariance ``var``); the data already seen is kept."""
        mean = np.asarray(mean, dtype=float)
        var = np.asarray(var, dtype=float)
        if mean.shape != (self.dim,) or var.shape != (self.dim,) or not (var > 0).all():
            raise ValueError("prior mean/var must have shape (dim,) and positive variances")
        self.prior_mean, self.prior_var = mean, var
        self._post: tuple[np.ndarray, np.ndarray] | None = None
        self._cov: np.ndarray | None = None
        self._draw_factor: np.ndarray | None = None

    def add(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> None:
        """Add rows ``x`` (k, dim) with targets ``y`` (k,) and weights ``w`` (k,), default 1."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        y = np.asarray(y, dtype=float).reshape(-1)
        w = np.ones_like(y) if w is None else np.asarray(w, dtype=float).reshape(-1)
        xw = x * w[:, None]
        self.xtx += xw.T @ x
        self.xty += xw.T @ y
        self.yty += float((w * y) @ y)
        self.weight += float(w.sum())
        self._post = None

    def forget(self, factor: float) -> None:
        """Scale the data's weight by ``factor`` in (0, 1] (exponential forgetting)."""
        if factor < 1.0:
            self.xtx *= factor
            self.xty *= factor
            self.yty *= factor
            self.weight *= factor
            self._post = None

    # ------------------------------------------------------------- posterior
    @property
    def noise_var(self) -> float:
        """sigma^2: the fixed value if given, else the mean squared residual (weighted) under
        the last posterior mean (a ridge fit the first time), floored at MIN_NOISE_VAR; 1.0
        before any data."""
        if self.fixed_noise_var is not None:
            return self.fixed_noise_var
        if self.weight <= 1.0:
            return 1.0
        mean = self._last_mean if self._last_mean is not None else self._ridge_mean()
        sse = self.yty - 2.0 * mean @ self.xty + mean @ self.xtx @ mean
        dof = max(1.0, self.weight - min(self.dim, self.weight / 2.0))
        return max(MIN_NOISE_VAR, float(sse) / dof)

    def _ridge_mean(self) -> np.ndarray:
        prec0 = 1.0 / self.prior_var
        return np.linalg.solve(self.xtx + np.diag(prec0 * 1e-6 + 1e-12), self.xty + 1e-6 * prec0 * self.prior_mean)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, precision) of theta; cached until the data or prior changes. One Cholesky
        factorisation serves the mean, the covariance and the draws."""
        if self._post is None:
            s2 = self.noise_var
            prec0 = 1.0 / self.prior_var
            precision = self.xtx / s2 + np.diag(prec0)
            inv_chol = np.linalg.inv(np.linalg.cholesky(precision))  # L^-1, L L' = precision
            self._draw_factor = inv_chol.T
            self._cov = self._draw_factor @ inv_chol
            mean = self._cov @ (self.xty / s2 + prec0 * self.prior_mean)
            self._post = (mean, precision)
            self._last_mean = mean
        return self._post

    @property
    def mean(self) -> np.ndarray:
        return self.posterior()[0]

    @property
    def cached_mean(self) -> np.ndarray | None:
        """The posterior mean if it is solved and current, else None (never solves)."""
        return None if self._post is None else self._post[0]

    @property
    def last_mean(self) -> np.ndarray | None:
        """The posterior mean last solved, current or not (None before the first solve)."""
        return self._last_mean

    def covariance(self) -> np.ndarray:
        """Posterior covariance of theta (cached with the posterior)."""
        self.posterior()
        assert self._cov is not None
        return self._cov

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of theta from the posterior: mean + L^-T z with L L' the precision (the
        factor is cached with the posterior, so a draw is one matrix-vector product)."""
        mean, _ = self.posterior()
        assert self._draw_factor is not None
        return mean + self._draw_factor @ rng.standard_normal(self.dim)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"xtx": self.xtx.tolist(), "xty": self.xty.tolist(), "yty": self.yty, "weight": self.weight}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load the statistics after checking they are ones data could have made: finite, of
        this model's shapes, ``X' W X`` symmetric positive semi-definite, ``y' W y`` and the
        weight >= 0, and ``|X' W y|_j <= sqrt((X' W X)_jj y' W y)`` (Cauchy-Schwarz: every
        weight is >= 0). A failure is a :class:`~camel_vllm.policies.state_values.BadStateValue`
        naming the field; nothing is changed then."""
        xtx = array(item(state, "xtx"), "xtx", (self.dim, self.dim))
        xty = array(item(state, "xty"), "xty", (self.dim,))
        yty, weight = number(state, "yty"), number(state, "weight")
        check_statistics(xtx, xty, yty)
        self.xtx, self.xty, self.yty, self.weight = xtx, xty, yty, weight
        self._post = None

