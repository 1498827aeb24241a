"""Contextual Gaussian Thompson sampling on request costs (``camel-ts``, camel's policy before
the model-based one) and its non-contextual form (``ts``).

Each (context, arm) cell keeps weighted sufficient statistics of its costs; the belief about
the cell's expected cost is a normal-inverse-gamma posterior (:mod:`camel_vllm.policies.thompson.nig`),
so both the mean and the noise level are learned. ``select`` draws one expected cost per
arm from its posterior, adds the switching cost, drops arms the SLO guard rules out and
plays the smallest draw among the available arms.

Sharing across contexts (hierarchical prior, empirical Bayes). A context's prior for an arm
is the posterior that arm has earned in every *other* context, discounted to ``strength``
pseudo-observations and shifted by the context's level offset (the weighted mean
difference between this context's costs and the other contexts' costs on the arms both
tried: high load makes every arm dearer, and the offset carries that over to arms this
context has not tried yet). ``strength`` = sigma^2 / tau^2, the noise variance over the
between-context variance of arm effects, estimated by the method of moments and capped at
``share_strength``: contexts that agree pool their evidence, contexts whose best arms
differ (low versus high load) soon stop sharing. With ``contextual`` off or a single
context there are no other contexts.

Structure over the arm grid (``additive_kappa``): every arm's prior also carries up to a few
pseudo-observations at the prediction of an additive model, cost ~ mu + g(frequency) +
h(batch cap), fitted to the arms tried in the context, with a weight estimated from how
well that model fits (empirical Bayes). At low load the batch cap hardly matters and one
pull per row and column teaches all 49 arms; an overloaded corner at high load breaks
additivity and the model steps aside. With it at 0 and one context this is Camel's per-arm
Gaussian Thompson sampling (the ``ts`` policy).

Change detection (``change_threshold``). A context's costs can shift under it (the load
inside one load bucket moves, the workload changes): a two-sided CUSUM per context watches
the standardised residuals of its observations and, on an alarm, the context forgets its
statistics and relearns from its prior (Cao et al., AISTATS 2019). This is what makes the
strong low-load structural prior (``additive_kappa_low_load``) safe: without it that prior
holds a stale optimum after a shift.

Data-adaptive base prior (``adaptive_prior``). Costs arrive on an unknown scale (log J*s,
or Camel's normalised cost), so the base prior's mean is the mean of every cost seen so
far and its noise scale beta0 = (alpha0 + 1) * pooled within-cell variance (so the prior's
mode of sigma^2 is that variance). alpha0 (default 6) is how much the arms share one noise
level: worth 2 alpha0 observations, so an arm pulled once is judged with the noise learned
on all arms instead of the very heavy tails of a 1-observation Student-t. Before any data
the configured :class:`NIGPrior` is used; arms with no data draw from a wide Student-t
around the typical cost.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.core.config import SLOConfig
from camel_vllm.policies.base import ArmEstimate
from camel_vllm.policies.thompson.nig import NIGParams, NIGPrior, SufficientStats, pool, posterior
from camel_vllm.core.events import Context, EngineSnapshot, RequestOutcome

logger = logging.getLogger("vllm.camel")

#: Floor for a latency before its log (s): a request that finished in "0 s" stays finite.
LATENCY_FLOOR_S = 1e-6


@dataclass(frozen=True)
class ThompsonParams:
    """Tunables (``policy_params`` keys of the same names; defaults in docs/policies.md).

    ``share_strength``: the most pseudo-observations of other contexts' evidence a context's
    prior may carry (0 disables sharing: independent per-context bandits). The strength
    actually used is estimated from the data (empirical Bayes, see :meth:`ThompsonPolicy.
    sharing_strength`): sigma^2 / tau^2, the noise variance over the between-context
    variance of arm effects, capped at ``share_strength``.
    ``additive_kappa``: cap on the pseudo-observations every arm's prior takes from an
    additive model cost(f, b) ~ mu + g(f) + h(b) fitted to the arms tried in the context
    (weight estimated by empirical Bayes, see :meth:`ThompsonPolicy._with_additive`); 0
    disables (Camel's flat prior).
    ``slo_min_evidence``: weight of latency observations an arm needs before the SLO guard
    may exclude it.
    ``additive_kappa_low_load``: a larger cap on the additive model's weight in contexts of
    the lowest load bucket (``Context.features[0] == 0``) of the contextual policy, where
    the batch cap rarely binds and the cost surface is close to additive; used only when
    ``additive_kappa`` > 0 (see :meth:`ThompsonPolicy._additive_cap`). Default 200 (tuning
    study, docs/policies.md); safe only with change detection on, because a strong prior
    fitted on an old load level would otherwise hold a stale optimum.
    ``queue_guard``: in the contextual policy, leave out arms whose batch cap is below the
    requests in the engine (running + waiting) at the decision, while an available arm's
    cap covers them (see :meth:`ThompsonPolicy._queue_allowed`). Not a ``policy_params``
    key yet (camel_vllm/policies/__init__.py would have to list it).
    ``change_threshold``: the alarm level h of a two-sided CUSUM (Page 1954) per context on
    standardised cost residuals (each observation against its cell's mean, in units of the
    pooled noise); 0 disables. On an alarm the context's statistics are forgotten and it
    learns afresh from its prior (the other contexts, the base prior): the monitored-bandit
    rule of Cao et al. (AISTATS 2019, "Nearly optimal adaptive procedure with change
    detection for piecewise-stationary bandit"). ``change_drift``: the CUSUM's allowance k
    (noise units per observation): only residuals beyond k count, so the detector reacts to
    level shifts larger than k noise units. Defaults h = 10, k = 1.5 (tuning study,
    docs/policies.md): Gaussian residuals essentially never alarm (each observation adds
    z - 1.5 > 0 with probability 7%), a shift of four noise units is caught in about four
    observations, and the heavy-tailed, autocorrelated costs of the Azure traces raised no
    alarm in the simulator (emulated).
    """

    prior: NIGPrior = NIGPrior()
    share_strength: float = 20.0
    additive_kappa: float = 8.0
    adaptive_prior: bool = True
    slo_min_evidence: float = 3.0
    queue_guard: bool = True
    additive_kappa_low_load: float = 200.0
    change_threshold: float = 10.0
    change_drift: float = 1.5


#: Sharing strength before any arm has been seen in both a context and the others.
INITIAL_SHARE_STRENGTH = 2.0
#: Standardised residuals are clipped to +-this before they enter the change detector, so
#: one heavy-tailed cost (a request that waited behind a burst) cannot raise an alarm alone:
#: an alarm at h = 10 needs at least 3 consecutive extreme residuals.
CHANGE_RESIDUAL_CLIP = 4.0
#: A cell's residuals enter the change detector once it holds this many observations
#: (before that its own mean is too uncertain to be contradicted).
CHANGE_MIN_CELL_N = 3.0
#: Weight of the additive grid model before its fit has residual degrees of freedom.
INITIAL_ADDITIVE_WEIGHT = 0.2
#: Backfitting sweeps of the additive model (it is a prior: an approximate fit will do).
BACKFIT_SWEEPS = 3
#: A context's prior (shared, structural) is rebuilt after this many observations, or when
#: the context tries a new arm; the arms' own statistics always enter fresh. Keeps ``select`` at one posterior update plus
#: one draw most of the time (the prior moves little per observation).
PRIOR_REFRESH_OBSERVATIONS = 2


class ThompsonPolicy:
    """Gaussian Thompson sampling with NIG posteriors, per context with hierarchical sharing."""

    def __init__(
        self,
        *,
        name: str,
        num_arms: int,
        num_contexts: int,
        contextual: bool,
        rng: np.random.Generator,
        arm_freqs_hz: Sequence[float | None] | None = None,
        arm_batches: Sequence[int] | None = None,
        params: ThompsonParams = ThompsonParams(),
        switch_cost: float = 0.0,
        slo: SLOConfig | None = None,
    ) -> None:
        params.prior.validate()
        self.name = name
        self.num_arms = int(num_arms)
        self.contextual = bool(contextual) and num_contexts > 1
        self.rng = rng
        self.params = params
        self.switch_cost = float(switch_cost)
        self.slo = slo
        freqs = list(arm_freqs_hz) if arm_freqs_hz is not None else [None] * self.num_arms
        self._freq_key = np.array([-1.0 if f is None else float(f) for f in freqs])
        batches = list(arm_batches) if arm_batches is not None else [0] * self.num_arms
        self._batch = np.asarray(batches, dtype=float)
        self._queue_guard = bool(params.queue_guard) and self.contextual and arm_batches is not None
        self._demand = 0
        self._row_load_bucket: dict[int, int] = {}
        self._f_idx = np.searchsorted(np.unique(self._freq_key), self._freq_key)
        self._b_idx = np.searchsorted(np.unique(batches), np.asarray(batches, dtype=float))
        self._additive_kappa = params.additive_kappa
        self._grid_shape = (int(self._f_idx.max()) + 1, int(self._b_idx.max()) + 1)
        nf, nb = self._grid_shape
        self._full_grid = bool(
            self.num_arms == nf * nb
            and np.array_equal(self._f_idx * nb + self._b_idx, np.arange(self.num_arms))
        )
        shape = (max(1, num_contexts) if self.contextual else 1, self.num_arms)
        self.stats = SufficientStats(shape)
        self.latency = SufficientStats(shape)
        self._warm_mean = np.full(self.num_arms, np.nan)
        self._warm_kappa = np.zeros(self.num_arms)
        self._slo_cache: dict[int, np.ndarray] = {}
        self._post_cache: dict[int, NIGParams] = {}
        self._prior_cache: dict[int, tuple[int, int, tuple[Any, Any, Any, Any]]] = {}
        self._observations = 0
        self._maintained = False  # maintain() drives prior refreshes (see there)
        self._maintained_at = -1  # self._observations when maintain() last found nothing stale
        self._last_row = 0
        self._predraw: tuple[int, np.ndarray] | None = None  # (row, draws) from maintain()
        self._half_built: tuple[int, int, int, tuple[Any, Any, Any, Any]] | None = None
        self._refreshed: set[int] = set()  # rows maintain() refreshed since the last select
        self._cusum = np.zeros((shape[0], 2))  # per context row: (upward, downward) CUSUM
        self.changes_detected = 0
        self._rebuild_totals()
        if slo is not None:
            import scipy.stats  # noqa: F401  (import now, not inside the first select)

    # ------------------------------------------------------------------ protocol
    def select(self, context: Context, available: Sequence[int], current: int | None) -> int:
        idx = np.asarray(available, dtype=np.intp)
        if idx.size == 0:
            raise ValueError("select() needs at least one available arm")
        c = self._last_row = self._row(context)
        self._refreshed.clear()
        predraw, self._predraw = self._predraw, None
        if predraw is not None and predraw[0] == c:
            draws = predraw[1]  # drawn by maintain() a few iterations ago, for this context
        else:
            draws = self.posterior_for(c).sample_means(self.rng)
        if self.switch_cost > 0.0 and current is not None:
            draws = draws + self.switch_cost * (self._freq_key != self._freq_key[current])
        if self._queue_guard:
            idx = self._queue_allowed(idx)
        if self.slo is not None:
            idx = self._slo_allowed(c, idx)
        return int(idx[np.argmin(draws[idx])])

    def observe_snapshot(self, snapshot: EngineSnapshot) -> None:
        """Remember the engine's demand (running + waiting requests) for the queue guard."""
        self._demand = int(snapshot.num_running) + int(snapshot.num_waiting)

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        if not math.isfinite(cost):
            logger.warning("camel: ignoring non-finite cost %r for arm %d", cost, arm_index)
            return
        row, weight = self._row(context), float(weight)
        if not weight > 0.0:
            return
        if self.params.change_threshold > 0.0 and self._change_detected(row, arm_index, float(cost), weight):
            self._forget_row(row)
        if row not in self._rows_with_data:
            self._rows_with_data.append(row)
        dof_before = max(float(self.stats.n[row, arm_index]) - 1.0, 0.0)
        self._m2_cells += self.stats.update((row, arm_index), float(cost), weight)
        self._dof += max(float(self.stats.n[row, arm_index]) - 1.0, 0.0) - dof_before
        self.pooled.update(arm_index, float(cost), weight)
        self._total_n += weight
        self._total_mean += weight * (float(cost) - self._total_mean) / self._total_n
        self._observations += 1
        self._post_cache.clear()

    def observe_outcome(self, outcome: RequestOutcome) -> None:
        """Keep log-latency statistics per (context, arm) for the SLO guard."""
        if self.slo is None:
            return
        value = slo_metric_s(outcome, self.slo.metric)
        if value is None:
            return
        log_value = math.log(max(value, LATENCY_FLOOR_S))
        for (context, arm_index), share in outcome.arm_shares.items():
            self.latency.update((self._row(context), arm_index), log_value, share)
        self._slo_cache.clear()

    def estimates(self) -> list[ArmEstimate]:
        """Pooled estimates per arm (``context_id`` None), then per context with data."""
        out: list[ArmEstimate] = []
        n, xbar, m2 = self.pooled.n, self.pooled.xbar, self.pooled.m2
        mu0, kappa0, alpha0, beta0 = self._base_prior()
        mean, std = posterior(mu0, kappa0, alpha0, beta0, n, xbar, m2).mean_std()
        out.extend(ArmEstimate(a, None, float(n[a]), float(mean[a]), float(std[a])) for a in range(self.num_arms))
        if self.contextual:
            for c in range(self.stats.shape[0]):
                if self.stats.n[c].sum() <= 0:
                    continue
                mean, std = self._compute_posterior(c, refresh=True).mean_std()
                out.extend(
                    ArmEstimate(a, c, float(self.stats.n[c, a]), float(mean[a]), float(std[a]))
                    for a in range(self.num_arms)
                )
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "nig-thompson",
            "num_arms": self.num_arms,
            "num_contexts": self.stats.shape[0],
            "stats": self.stats.to_dict(),
            "latency": self.latency.to_dict(),
            "warm_mean": [None if math.isnan(v) else float(v) for v in self._warm_mean],
            "warm_kappa": self._warm_kappa.tolist(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != "nig-thompson":
            raise ValueError(f"state kind {state.get('kind')!r} is not nig-thompson")
        if int(state["num_arms"]) != self.num_arms:
            raise ValueError(f"state has {state['num_arms']} arms, policy has {self.num_arms}")
        rows = int(state["num_contexts"])
        if rows != self.stats.shape[0]:
            raise ValueError(f"state has {rows} contexts, policy has {self.stats.shape[0]}")
        stats = SufficientStats(self.stats.shape)
        stats.load(state["stats"])
        latency = SufficientStats(self.stats.shape)
        latency.load(state["latency"])
        warm_mean = np.array([np.nan if v is None else float(v) for v in state["warm_mean"]])
        warm_kappa = np.asarray(state["warm_kappa"], dtype=float)
        if warm_mean.shape != (self.num_arms,) or warm_kappa.shape != (self.num_arms,):
            raise ValueError("warm-start arrays do not match the number of arms")
        self.stats, self.latency = stats, latency
        self._warm_mean, self._warm_kappa = warm_mean, warm_kappa
        self._rebuild_totals()

    # -------------------------------------------------------------- warm start
    def set_prior_means(self, means: Sequence[float], strength: float) -> None:
        """Seed each arm's prior mean (cost scale) worth ``strength`` pseudo-observations.

        Entries that are None or NaN keep the default prior. Used to warm-start from a fitted
        energy model before any request was served.
        """
        values = np.array([np.nan if m is None else float(m) for m in means])
        if values.shape != (self.num_arms,):
            raise ValueError(f"set_prior_means needs {self.num_arms} means, got {values.shape[0]}")
        if not strength > 0:
            raise ValueError(f"set_prior_means strength must be > 0, got {strength}")
        self._warm_mean = values
        self._warm_kappa = np.where(np.isnan(values), 0.0, float(strength))
        self._predraw = None
        self._post_cache.clear()
        self._prior_cache.clear()

    # --------------------------------------------------------------- internals
    def _row(self, context: Context) -> int:
        if not self.contextual:
            return 0
        c = int(context.id)
        if c < 0:
            raise ValueError(f"context id {c} is negative")
        if context.features and c not in self._row_load_bucket:
            self._row_load_bucket[c] = int(context.features[0])
        if c >= self.stats.shape[0]:
            self.stats.grow((c + 1, self.num_arms))
            self.latency.grow((c + 1, self.num_arms))
            self._cusum = np.vstack([self._cusum, np.zeros((c + 1 - self._cusum.shape[0], 2))])
            self._post_cache.clear()
            self._prior_cache.clear()
            self._slo_cache.clear()
        return c

    def _change_detected(self, row: int, arm_index: int, cost: float, weight: float) -> bool:
        """Feed one observation to context ``row``'s CUSUM; True on an alarm.

        The residual is the cost against its cell's mean, standardised by the pooled noise
        (within-cell spread over all cells) and the mean's own uncertainty: z = (x - xbar) /
        (sigma sqrt(1 + 1/n)), clipped to +-CHANGE_RESIDUAL_CLIP. Both one-sided sums move
        by ``weight`` (z - k) and alarm above h (``change_drift`` k, ``change_threshold`` h).
        """
        n = float(self.stats.n[row, arm_index])
        if n < CHANGE_MIN_CELL_N or self._dof < 1.0 or self._m2_cells <= 0.0:
            return False
        sigma = math.sqrt(self._m2_cells / self._dof * (1.0 + 1.0 / n))
        z = (cost - float(self.stats.xbar[row, arm_index])) / sigma
        z = min(CHANGE_RESIDUAL_CLIP, max(-CHANGE_RESIDUAL_CLIP, z))
        k = self.params.change_drift
        sums = self._cusum[row]
        sums[0] = max(0.0, sums[0] + weight * (z - k))
        sums[1] = max(0.0, sums[1] + weight * (-z - k))
        return bool(sums.max() > self.params.change_threshold)

    def _forget_row(self, row: int) -> None:
        """Drop context ``row``'s statistics after a detected change (its prior remains)."""
        logger.info("camel: the costs of context %d changed (CUSUM alarm); relearning it", row)
        for stats in (self.stats, self.latency):
            stats.n[row] = 0.0
            stats.xbar[row] = 0.0
            stats.m2[row] = 0.0
        self._cusum[row] = 0.0
        self.changes_detected += 1
        self._rebuild_totals()

    def _rebuild_totals(self) -> None:
        """Recompute the running totals kept beside the per-cell statistics (after a load)."""
        n, xbar, m2 = self.stats.n, self.stats.xbar, self.stats.m2
        self.pooled = SufficientStats((self.num_arms,))
        self.pooled.n, self.pooled.xbar, self.pooled.m2 = pool(n, xbar, m2)
        self._total_n = float(n.sum())
        self._total_mean = float((n * xbar).sum() / self._total_n) if self._total_n > 0 else 0.0
        self._m2_cells = float(m2.sum())
        self._dof = float(np.maximum(n - 1.0, 0.0).sum())
        self._rows_with_data = [int(r) for r in np.flatnonzero(n.sum(axis=1) > 0.0)]
        self._predraw = None
        self._half_built = None
        self._post_cache.clear()
        self._prior_cache.clear()
        self._slo_cache.clear()

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
            if not refresh:  # estimates() (metrics thread) reads without writing the cache
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
            mean_p, kappa_p = self._with_additive(mean_p, kappa_p, n_c, xbar_c, cap)
        return mean_p, kappa_p, alpha_p, beta_p

    def maintain(self) -> None:
        """Rebuild at most one stale context prior; called by the controller on the few
        iterations before a decision (``MAINTAIN_LEAD_ITERATIONS``).

        A prior rebuild (sharing across contexts and the additive grid fit) is most of a
        decision's cost (~100-300 us of numpy on 49 arms). Done here, in two halves on two
        calls (shared prior, then the additive grid fit), each context at most once between
        two decisions, and once nothing is stale, the Thompson draw for the context decided
        last is made
        here too: if the next decision is in that context it plays that draw (a posterior at
        most a few iterations old: delayed feedback), so a decision is an argmin. The context
        decided last is refreshed first. Once called, ``select`` no longer rebuilds stale
        priors itself (only a context's first prior).
        """
        self._maintained = True
        if self._half_built is not None:  # second half of a rebuild: the additive grid fit
            row, observations, tried, (mean_p, kappa_p, alpha_p, beta_p) = self._half_built
            self._half_built = None
            n_c, xbar_c = self.stats.n[row], self.stats.xbar[row]
            mean_p, kappa_p = self._with_additive(mean_p, kappa_p, n_c, xbar_c, self._additive_cap(row))
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

    def _context_prior(self, row: int, n_c: np.ndarray, xbar_c: np.ndarray, m2_c: np.ndarray) -> tuple[Any, Any, Any, Any]:
        """The prior of every arm in context ``row``: the base prior, or (contextual) the
        other contexts' posterior discounted to the empirical-Bayes sharing strength."""
        mean0, kappa0, alpha0, beta0 = self._base_prior()
        if not self.contextual or self.params.share_strength <= 0.0:
            return mean0, kappa0, alpha0, beta0
        # Other contexts' statistics per arm = pooled minus this row (Chan's formula reversed;
        # an arm no other context has tried gets n_o = 0 and so adds nothing below).
        n_p = self.pooled.n
        n_o = n_p - n_c
        has_o = n_o > 1e-9
        safe_o = np.where(has_o, n_o, 1.0)
        xbar_o = (n_p * self.pooled.xbar - n_c * xbar_c) / safe_o
        dev = xbar_c - xbar_o
        m2_o = np.maximum(self.pooled.m2 - m2_c - (n_c * n_o / np.maximum(n_p, 1e-12)) * dev * dev, 0.0)
        # Level offset of this context against the others, on arms both have seen; each arm
        # weighs n_c / (n_c + 1) (about one vote per arm), so the arm the context plays most
        # does not decide alone whether the contexts agree.
        w = n_c / (n_c + 1.0) * has_o
        w_sum = float(w.sum())
        offset = float(w.dot(dev)) / (w_sum + 1.0)
        strength = self.sharing_strength(w, dev - offset, n_c, safe_o, w_sum)
        # The others' posterior, discounted to at most `strength` pseudo-observations.
        eff = np.minimum(n_o, strength)
        kappa_s = kappa0 + n_o
        shift = xbar_o - mean0
        mean_s = mean0 + (n_o / kappa_s) * shift + offset
        excess_beta = 0.5 * m2_o + (0.5 * kappa0) * n_o * shift * shift / kappa_s
        return mean_s, kappa0 + eff, alpha0 + 0.5 * eff, beta0 + (eff / safe_o) * excess_beta

    def sharing_strength(self, w: np.ndarray, resid: np.ndarray, n_c: np.ndarray, n_o: np.ndarray,
                         w_sum: float) -> float:
        """Empirical-Bayes strength of the shared prior for one context (pseudo-observations).

        Method of moments on the arms this context and the others have both tried: tau^2 =
        weighted mean of (residual^2 - sigma^2 (1/n_c + 1/n_o)), the between-context variance
        of an arm's cost beyond the context's level offset; strength = sigma^2 / tau^2, capped
        at ``share_strength`` (tau^2 floored there). Contexts that agree share a lot;
        contexts whose best arms differ share almost nothing.
        """
        cap = self.params.share_strength
        if w_sum < 1.0 or self._dof < 1.0 or self._m2_cells <= 0.0:
            return min(cap, INITIAL_SHARE_STRENGTH)
        sigma2 = self._m2_cells / self._dof
        excess = resid * resid - sigma2 * (1.0 / np.maximum(n_c, 1e-12) + 1.0 / n_o)
        tau2 = max(float(w.dot(excess)) / w_sum, sigma2 / cap)
        return min(cap, sigma2 / tau2)

    def _additive_cap(self, row: int) -> float:
        """The cap on the additive model's weight in context row ``row``.

        ``additive_kappa``, raised to ``additive_kappa_low_load`` in the contextual policy's
        lowest load bucket: there the batch cap rarely binds under continuous batching and
        frequency and cap act nearly additively, so the empirical-Bayes weight sigma^2 / tau^2
        may be trusted up to a strong prior (tuning study, docs/policies.md, 200: Azure
        conversation trace mean EDP 375.9 -> 355.0 J*s, bandit stationary regret 56 -> 39,
        emulated). At higher load an overloaded corner (small cap, low clock: +2 to +8 log
        units in the bandit benchmark's high-load level) breaks additivity; in the bandit
        benchmark's ``shift`` the high level (load 0.57) straddles the first load edge (0.5),
        so the low-load context turns non-stationary, and the strong prior keeps the stale
        fit (shift regret 168 -> 207, above ts's 175): hence off by default.
        """
        cap = self._additive_kappa
        if cap > 0.0 and self.contextual and self._row_load_bucket.get(row, -1) == 0:
            cap = max(cap, self.params.additive_kappa_low_load)
        return cap

    def _with_additive(self, mean_p: Any, kappa_p: Any, n_c: np.ndarray, xbar_c: np.ndarray,
                       cap: float) -> tuple[Any, Any]:
        """Add an additive frequency + batch-cap model's prediction to every arm's prior.

        cost(f, b) ~ mu + g(f) + h(b), fitted by backfitting to the posterior means of the arms
        tried in this context. Its weight (pseudo-observations) is estimated like the
        sharing strength: sigma^2 / tau^2 with tau^2 the residual variance of the fit beyond
        sampling noise (degrees-of-freedom corrected), capped at ``additive_kappa``. Where the
        surface is additive (low load: the batch cap barely matters), a few arms teach all;
        where it is not (an overloaded corner at high load), the model steps aside.
        """
        tried = n_c > 0.0
        count = int(np.count_nonzero(tried))
        if count < 2:
            return mean_p, kappa_p
        post_mean = (kappa_p * mean_p + n_c * xbar_c) / (kappa_p + n_c)
        w = tried * 1.0
        mu = float(w.dot(post_mean)) / count
        if self._full_grid:  # arm index = f * B + b: row/column sums of a (F, B) matrix
            nf, nb = self._grid_shape
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
            nf, nb = self._grid_shape
            wf = np.bincount(self._f_idx, w, nf)
            wb = np.bincount(self._b_idx, w, nb)
            h = np.zeros(nb)
            for _ in range(BACKFIT_SWEEPS):
                g = np.bincount(self._f_idx, w * (post_mean - mu - h[self._b_idx]), nf) / np.maximum(wf, 1e-12)
                h = np.bincount(self._b_idx, w * (post_mean - mu - g[self._f_idx]), nb) / np.maximum(wb, 1e-12)
            pred = mu + g[self._f_idx] + h[self._b_idx]
        params = 1 + int((wf > 0).sum()) - 1 + int((wb > 0).sum()) - 1
        if count - params < 2 or self._dof < 1.0 or self._m2_cells <= 0.0:
            weight = min(cap, INITIAL_ADDITIVE_WEIGHT)
        else:
            sigma2 = self._m2_cells / self._dof
            resid = (post_mean - pred)[tried]
            excess = resid * resid * (count / (count - params)) - sigma2 / n_c[tried]
            tau2 = max(float(excess.sum()) / count, sigma2 / cap)
            weight = min(cap, sigma2 / tau2)
        # An arm off the fitted rows/columns has only a partial prediction (the missing
        # effect taken as average), trusted as much as the spread of the tried arms allows:
        # sigma^2 / var(tried means) pseudo-observations at most.
        covered = (wf[self._f_idx] > 0.0) & (wb[self._b_idx] > 0.0)
        weak = min(weight, INITIAL_ADDITIVE_WEIGHT)
        dev = post_mean[tried] - mu
        spread2 = float(dev.dot(dev)) / count
        if self._dof >= 1.0 and spread2 > 0.0:
            weak = min(weak, (self._m2_cells / self._dof) / spread2)
        w_arm = np.where(covered, weight, weak)
        return (kappa_p * mean_p + w_arm * pred) / (kappa_p + w_arm), kappa_p + w_arm

    def _queue_allowed(self, idx: np.ndarray) -> np.ndarray:
        """Available arms whose batch cap admits every request in the engine (never none).

        Under continuous batching a cap only bounds admission: at or above the demand it does
        not bind, below it requests wait. The controller credits a request's cost to the arms
        that served its tokens, so the waiting a small cap causes is charged to the arms in
        force later and the small cap's posterior cannot learn it (emulated Orin, Azure
        conversation trace, static 510 MHz: cap 4 has 43x the mean EDP of cap 28). Caps below
        the demand are left out while a larger available cap exists; otherwise the largest
        available caps are kept. Without snapshots (``observe_snapshot`` never called) the
        guard does nothing.
        """
        if self._demand <= 0:
            return idx
        caps = self._batch[idx]
        ok = caps >= self._demand
        if ok.any():
            return idx[ok]
        return idx[caps == caps.max()]

    def _slo_allowed(self, row: int, idx: np.ndarray) -> np.ndarray:
        """Available arms whose latency posterior does not break the SLO (never none)."""
        assert self.slo is not None
        quantiles = self._slo_cache.get(row)
        if quantiles is None:
            quantiles = self._latency_quantiles(row)
            self._slo_cache[row] = quantiles
        limit = math.log(self.slo.threshold_s)
        ok = ~(quantiles[idx] > limit)  # NaN (no evidence) stays allowed
        if ok.any():
            return idx[ok]
        return idx[[int(np.nanargmin(quantiles[idx]))]]

    def _latency_quantiles(self, row: int) -> np.ndarray:
        """Posterior-predictive SLO quantile of log latency per arm; NaN without evidence.

        A context's own statistics are used once they carry ``slo_min_evidence``; before
        that the arm's statistics pooled over contexts, if those do.
        """
        assert self.slo is not None
        need = self.params.slo_min_evidence
        n_p, xbar_p, m2_p = pool(self.latency.n, self.latency.xbar, self.latency.m2)
        local = self.latency.n[row] >= need
        n = np.where(local, self.latency.n[row], n_p)
        xbar = np.where(local, self.latency.xbar[row], xbar_p)
        m2 = np.where(local, self.latency.m2[row], m2_p)
        # Weak prior centred on the data; noise scale from the pooled within-arm spread.
        dof = np.maximum(n_p - 1.0, 0.0).sum()
        var = float(m2_p.sum() / dof) if dof >= 1.0 else 0.1
        alpha0 = 1.0
        post = posterior(xbar, 1e-3, alpha0, (alpha0 + 1.0) * max(var, 1e-6), n, xbar, m2)
        q = post.predictive_quantile(self.slo.quantile)
        return np.where(n >= need, q, np.nan)


def slo_metric_s(outcome: RequestOutcome, metric: str) -> float | None:
    """The request's SLO metric in seconds (``None`` if it cannot be computed)."""
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
