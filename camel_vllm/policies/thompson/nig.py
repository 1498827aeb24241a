"""Normal-inverse-gamma (NIG) posteriors for Gaussian costs with unknown mean and variance.

Model for one arm: cost ~ N(mu, sigma^2), prior sigma^2 ~ InvGamma(alpha0, beta0) and
mu | sigma^2 ~ N(mu0, sigma^2 / kappa0). The posterior after observations with weighted
sufficient statistics (n = sum of weights, xbar = weighted mean, m2 = weighted sum of squared
deviations from xbar) is NIG(mu_n, kappa_n, alpha_n, beta_n) with (Murphy, "Conjugate
Bayesian analysis of the Gaussian distribution", 2007, eqs. 86-89)::

    kappa_n = kappa0 + n
    mu_n    = (kappa0 * mu0 + n * xbar) / kappa_n
    alpha_n = alpha0 + n / 2
    beta_n  = beta0 + m2 / 2 + kappa0 * n * (xbar - mu0)^2 / (2 * kappa_n)

A weighted observation (cost x, weight w in (0, 1]) enters the statistics as w
pseudo-observations of x: with integer w this is exactly w copies, and fractional weights
interpolate (the controller credits a request served under several arms to each with its
share of tokens, so the shares of one request add up to one observation).

The marginal posterior of mu is Student-t with 2 alpha_n degrees of freedom, location mu_n and
scale^2 beta_n / (alpha_n kappa_n); the posterior predictive of a new cost is Student-t with
the same degrees of freedom and scale^2 beta_n (kappa_n + 1) / (alpha_n kappa_n).

Everything here works on numpy arrays (one entry per arm, or per (context, arm)), so a
Thompson draw over 49 arms is a handful of vector operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from camel_vllm.policies.state_values import array, item


@dataclass(frozen=True)
class NIGPrior:
    """Prior hyper-parameters (documented defaults; see docs/policies.md).

    ``kappa`` is the prior's weight in pseudo-observations on the mean; ``alpha``/``beta`` the
    shape/scale of the inverse-gamma on the noise variance (prior mean of sigma^2 is
    beta / (alpha - 1) for alpha > 1).
    """

    mean: float = 0.0
    kappa: float = 1e-3
    alpha: float = 6.0
    beta: float = 0.35

    def validate(self) -> None:
        if not (self.kappa > 0 and self.alpha > 0 and self.beta > 0):
            raise ValueError(f"NIG prior needs kappa, alpha, beta > 0, got {self}")


@dataclass
class NIGParams:
    """Posterior hyper-parameters, arrays of one shape."""

    mean: np.ndarray
    kappa: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    _beta_over_kappa: np.ndarray | None = field(default=None, repr=False, compare=False)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of mu (the arm's expected cost).

        The Student-t variance needs alpha > 1; below that the scale is returned (the
        variance is infinite, the scale still ranks the uncertainty).
        """
        scale2 = self.beta / (self.alpha * self.kappa)
        df = 2.0 * self.alpha
        var = np.where(df > 2.0, scale2 * df / np.maximum(df - 2.0, 1e-12), scale2)
        return self.mean.copy(), np.sqrt(var)

    def predictive_quantile(self, q: float) -> np.ndarray:
        """The q-quantile of the posterior predictive of one new observation."""
        from scipy.stats import t as student_t

        scale = np.sqrt(self.beta * (self.kappa + 1.0) / (self.alpha * self.kappa))
        return self.mean + scale * student_t.ppf(q, 2.0 * self.alpha)

    def sample_means(self, rng: np.random.Generator) -> np.ndarray:
        """One Thompson draw of mu per entry: sigma^2 ~ InvGamma, mu ~ N(mean, sigma^2/kappa).

        sigma^2 = beta / g with g ~ Gamma(alpha, 1), so mu = mean + z * sqrt(beta / (kappa g)).
        """
        if self._beta_over_kappa is None:
            self._beta_over_kappa = self.beta / self.kappa
        g = rng.standard_gamma(self.alpha)
        return self.mean + rng.standard_normal(g.shape) * np.sqrt(self._beta_over_kappa / g)


def posterior(
    mean0: np.ndarray | float,
    kappa0: np.ndarray | float,
    alpha0: np.ndarray | float,
    beta0: np.ndarray | float,
    n: np.ndarray,
    xbar: np.ndarray,
    m2: np.ndarray,
) -> NIGParams:
    """The closed-form NIG posterior from weighted sufficient statistics (module docstring).

    ``n``, ``xbar`` and ``m2`` are arrays of one shape; the prior may be scalars or arrays
    that broadcast to it.
    """
    n = np.asarray(n, dtype=float)
    kappa_n = kappa0 + n
    mean_n = (kappa0 * mean0 + n * xbar) / kappa_n
    alpha_n = alpha0 + 0.5 * n
    beta_n = beta0 + 0.5 * m2 + 0.5 * kappa0 * n * (xbar - mean0) ** 2 / kappa_n
    # n, xbar and m2 share one shape, so every result has it (priors broadcast).
    return NIGParams(mean=mean_n, kappa=kappa_n, alpha=alpha_n, beta=beta_n)


class SufficientStats:
    """Weighted running statistics (n, xbar, m2) per entry of an array (Welford, weighted).

    ``update(index, x, w)`` with w pseudo-observations of x::

        n' = n + w;  xbar' = xbar + w (x - xbar) / n';  m2' = m2 + w (x - xbar) (x - xbar')
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.n = np.zeros(shape)
        self.xbar = np.zeros(shape)
        self.m2 = np.zeros(shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.n.shape

    def update(self, index: tuple[int, ...] | int, x: float, weight: float = 1.0) -> float:
        """Add ``weight`` pseudo-observations of ``x``; returns the increase of m2."""
        if not weight > 0.0:
            return 0.0
        n_new = float(self.n[index]) + weight
        delta = x - float(self.xbar[index])
        xbar_new = float(self.xbar[index]) + weight * delta / n_new
        increment = weight * delta * (x - xbar_new)
        self.m2[index] += increment
        self.xbar[index] = xbar_new
        self.n[index] = n_new
        return increment

    def grow(self, shape: tuple[int, ...]) -> None:
        """Enlarge (zero-padded) to ``shape``; existing entries keep their place."""
        for name in ("n", "xbar", "m2"):
            old = getattr(self, name)
            new = np.zeros(shape)
            new[tuple(slice(0, s) for s in old.shape)] = old
            setattr(self, name, new)

    def to_dict(self) -> dict[str, list]:
        return {"n": self.n.tolist(), "xbar": self.xbar.tolist(), "m2": self.m2.tolist()}

    def load(self, data: Mapping[str, Any]) -> None:
        """Load ``{"n", "xbar", "m2"}`` of this shape after checking them: finite, weights and
        sums of squares >= 0 (a failure names the field, e.g. ``n[2]``, and changes nothing)."""
        n = array(item(data, "n"), "n", self.shape, low=0.0)
        xbar = array(item(data, "xbar"), "xbar", self.shape)
        m2 = array(item(data, "m2"), "m2", self.shape, low=-1e-9)  # rounding
        self.n, self.xbar, self.m2 = n, xbar, m2


def pool(n: np.ndarray, xbar: np.ndarray, m2: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine statistics along ``axis`` (Chan et al.'s parallel formula, weighted)."""
    n_tot = n.sum(axis=axis)
    safe = np.where(n_tot > 0, n_tot, 1.0)
    xbar_tot = (n * xbar).sum(axis=axis) / safe
    dev = xbar - np.expand_dims(xbar_tot, axis)
    m2_tot = (m2 + n * dev**2).sum(axis=axis)
    return n_tot, np.where(n_tot > 0, xbar_tot, 0.0), m2_tot
