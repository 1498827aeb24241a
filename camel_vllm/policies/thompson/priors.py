"""The context priors of ``camel-ts``: how each context's prior is built, cached and rebuilt.

A context's prior is the base prior (data-adaptive, or warm-started per arm), shared from the
other contexts (:mod:`.sharing`) and shaped by the additive grid model (:mod:`.additive`).
Rebuilding it is most of a decision's cost, so it is cached and rebuilt when stale, between
decisions where the controller calls :meth:`ContextPriors.maintain`. :class:`ContextPriors` is
the part of :class:`~camel_vllm.policies.thompson.policy.ThompsonPolicy` that does this; it
reads the policy's statistics and writes only the caches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from camel_vllm.policies.decision import Deadline
from camel_vllm.policies.thompson.additive import AdditiveGrid
from camel_vllm.policies.thompson.nig import NIGParams, SufficientStats, posterior
from camel_vllm.policies.thompson.sharing import shared_prior

#: A context's prior (shared, structural) is rebuilt after this many observations, or when
#: the context tries a new arm; the arms' own statistics always enter fresh. Keeps ``select``
#: at one posterior update plus one draw most of the time (the prior moves little per observation).
PRIOR_REFRESH_OBSERVATIONS = 2


class ContextPriors:
    """Prior building and caching, mixed into :class:`~camel_vllm.policies.thompson.policy.ThompsonPolicy`.

    Reads the policy's parameters and statistics (declared below); owns ``_prior_cache``
    (row -> (observations when built, arms tried then, prior)), ``_post_cache``, the
    half-built prior and the pre-drawn next decision.
    """

    # The policy's state this part reads (set by ThompsonPolicy.__init__ and its updates).
    params: Any
    contextual: bool
    rng: np.random.Generator
    stats: SufficientStats
    pooled: SufficientStats
    _grid: AdditiveGrid
    _additive_kappa: float
    _row_load_bucket: dict[int, int]
    _warm_mean: np.ndarray
    _warm_kappa: np.ndarray
    _total_n: float
    _total_mean: float
    _m2_cells: float
    _dof: float
    _observations: int
    _rows_with_data: list[int]
    _last_row: int
    # What it owns.
    _prior_cache: dict[int, tuple[int, int, tuple[Any, Any, Any, Any]]]
    _post_cache: dict[int, NIGParams]
    _maintained: bool
    _maintained_at: int
    _predraw: tuple[int, np.ndarray] | None
    _half_built: tuple[int, int, int, tuple[Any, Any, Any, Any]] | None
    _refreshed: set[int]

    def _base_prior(self) -> tuple[np.ndarray | float, np.ndarray | float, float, float]:
        """(mean0, kappa0) per arm (scalars unless warm-started) and shared (alpha0, beta0)."""
        prior = self.params.prior
        mean0, beta0 = prior.mean, prior.beta
        if self.params.adaptive_prior and self._total_n > 0:
            mean0 = self._total_mean
            if self._dof >= 1.0 and self._m2_cells > 0.0:
                beta0 = (prior.alpha + 1.0) * self._m2_cells / self._dof
        if np.isnan(self._warm_mean).all():
            return mean0, prior.kappa, prior.alpha, beta0
        warm = ~np.isnan(self._warm_mean)
        return (
            np.where(warm, self._warm_mean, mean0),
            np.where(warm, self._warm_kappa, prior.kappa),
            prior.alpha,
            beta0,
        )

    def posterior_for(self, row: int) -> NIGParams:
        """The posterior of every arm's expected cost in context row ``row`` (cached until
        the next observation)."""
        cached = self._post_cache.get(row)
        if cached is None:
            cached = self._post_cache[row] = self._compute_posterior(row)
        return cached

    def _compute_posterior(self, row: int, *, refresh: bool = False) -> NIGParams:
        n_c, xbar_c, m2_c = self.stats.n[row], self.stats.xbar[row], self.stats.m2[row]
        cached = self._prior_cache.get(row)
        # With maintain() driving refreshes between decisions, a decision takes the prior as
        # last rebuilt (at most an epoch old); without it, a stale prior is rebuilt here.
        if refresh or cached is None or (not self._maintained and self._prior_stale(row, cached)):
            cached = (self._observations, int(np.count_nonzero(n_c)), self._build_prior(row))
            if not refresh:  # estimates() (the metrics snapshot) reads without writing the cache
                self._prior_cache[row] = cached
        mean_p, kappa_p, alpha_p, beta_p = cached[2]
        return posterior(mean_p, kappa_p, alpha_p, beta_p, n_c, xbar_c, m2_c)

    def _prior_stale(self, row: int, cached: tuple[int, int, Any]) -> bool:
        """Whether row ``row``'s cached prior needs a rebuild: a newly tried arm reshapes
        the structural prior; otherwise every PRIOR_REFRESH_OBSERVATIONS observations."""
        return (
            self._observations - cached[0] >= PRIOR_REFRESH_OBSERVATIONS
            or cached[1] != int(np.count_nonzero(self.stats.n[row]))
        )

    def _build_prior(self, row: int) -> tuple[Any, Any, Any, Any]:
        """Row ``row``'s prior: shared (other contexts), additive grid model."""
        n_c, xbar_c, m2_c = self.stats.n[row], self.stats.xbar[row], self.stats.m2[row]
        mean_p, kappa_p, alpha_p, beta_p = self._context_prior(row, n_c, xbar_c, m2_c)
        cap = self._additive_cap(row)
        if cap > 0.0:
            mean_p, kappa_p = self._grid.with_prior(mean_p, kappa_p, n_c, xbar_c, cap,
                                                   m2_cells=self._m2_cells, dof=self._dof)
        return mean_p, kappa_p, alpha_p, beta_p

    def maintain(self, deadline: Deadline) -> None:
        """Rebuild at most one stale context prior; called by the controller on the few
        iterations before a decision (``MAINTAIN_LEAD_ITERATIONS``; ``deadline`` is not needed).

        A prior rebuild (sharing across contexts and the additive grid fit) is most of a
        decision's cost (~100-300 us of numpy on 49 arms). Done here, in two halves on two
        calls (shared prior, then the additive grid fit), each context at most once between
        two decisions, and once nothing is stale, the Thompson draw for the context decided
        last is made here too: if the next decision is in that context it plays that draw (a posterior at
        most a few iterations old: delayed feedback), so a decision is an argmin. The context
        decided last is refreshed first. Once called, ``select`` no longer rebuilds stale
        priors itself (only a context's first prior).
        """
        self._maintained = True
        if self._half_built is not None:  # second half of a rebuild: the additive grid fit
            row, observations, tried, (mean_p, kappa_p, alpha_p, beta_p) = self._half_built
            self._half_built = None
            n_c, xbar_c = self.stats.n[row], self.stats.xbar[row]
            mean_p, kappa_p = self._grid.with_prior(mean_p, kappa_p, n_c, xbar_c, self._additive_cap(row),
                                                   m2_cells=self._m2_cells, dof=self._dof)
            self._install_prior(row, observations, tried, (mean_p, kappa_p, alpha_p, beta_p))
            return
        if self._observations != self._maintained_at:
            rows = [self._last_row] + [r for r in self._rows_with_data if r != self._last_row]
            for row in rows:
                cached = self._prior_cache.get(row)
                if cached is None or row in self._refreshed or not self._prior_stale(row, cached):
                    continue
                self._refreshed.add(row)
                observations, tried = self._observations, int(np.count_nonzero(self.stats.n[row]))
                n_c, xbar_c, m2_c = self.stats.n[row], self.stats.xbar[row], self.stats.m2[row]
                prior = self._context_prior(row, n_c, xbar_c, m2_c)
                if self._additive_cap(row) > 0.0:
                    self._half_built = (row, observations, tried, prior)
                else:
                    self._install_prior(row, observations, tried, prior)
                return
            self._maintained_at = self._observations
        if self._predraw is None and self._last_row in self._prior_cache:
            row = self._last_row
            self._predraw = (row, self.posterior_for(row).sample_means(self.rng))

    def _install_prior(self, row: int, observations: int, tried: int, prior: tuple[Any, Any, Any, Any]) -> None:
        self._prior_cache[row] = (observations, tried, prior)
        self._post_cache.pop(row, None)

    def _context_prior(self, row: int, n_c: np.ndarray, xbar_c: np.ndarray,
                       m2_c: np.ndarray) -> tuple[Any, Any, Any, Any]:
        """The prior of every arm in context ``row``: the base prior, or (contextual) the
        other contexts' posterior discounted to the empirical-Bayes sharing strength."""
        base = self._base_prior()
        if not self.contextual or self.params.share_strength <= 0.0:
            return base
        return shared_prior(base, self.pooled, n_c, xbar_c, m2_c,
                            cap=self.params.share_strength, m2_cells=self._m2_cells, dof=self._dof)

    def _additive_cap(self, row: int) -> float:
        """The cap on the additive model's weight in context row ``row``: ``additive_kappa``,
        raised to ``additive_kappa_low_load`` in the contextual policy's lowest load bucket,
        where the batch cap rarely binds and frequency and cap act nearly additively (an
        overloaded corner at higher load breaks additivity; docs/policies.md has the tuning).
        """
        cap = self._additive_kappa
        if cap > 0.0 and self.contextual and self._row_load_bucket.get(row, -1) == 0:
            cap = max(cap, self.params.additive_kappa_low_load)
        return cap
