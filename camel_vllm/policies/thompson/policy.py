"""``camel-ts`` (contextual Gaussian Thompson sampling on request costs, camel's policy before
the model-based one) and its non-contextual form ``ts`` (Camel's paper bandit).

Each (context, arm) cell keeps weighted statistics of its costs, and the cell's expected cost
a normal-inverse-gamma posterior (:mod:`.nig`). ``select`` draws one expected cost per arm,
adds the switching cost, leaves out the arms the guards rule out (:mod:`.guards`) and plays
the smallest draw. A context's prior is the data-adaptive base prior, shared from the other
contexts (:mod:`.sharing`) and shaped by the additive grid model (:mod:`.additive`); it is
cached and rebuilt between decisions (:meth:`ThompsonPolicy.maintain`). A context whose
costs shift is relearnt (:mod:`.change`). Design and measurements: docs/policies.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.core.config import SLOConfig
from camel_vllm.core.events import Context, RequestOutcome
from camel_vllm.policies.base import ArmEstimate, Policy
from camel_vllm.policies.decision import DecisionInput
from camel_vllm.policies.declaration import BuildInputs, Param, PolicyDeclaration, flag, number
from camel_vllm.policies.thompson.additive import AdditiveGrid
from camel_vllm.policies.thompson.change import ChangeDetector
from camel_vllm.policies.slo.filter import slo_allowed, slo_metric_s
from camel_vllm.policies.thompson.guards import latency_quantiles, queue_allowed
from camel_vllm.policies.thompson.nig import NIGParams, NIGPrior, SufficientStats, pool, posterior
from camel_vllm.policies.thompson.priors import ContextPriors
from camel_vllm.policies.state_values import BadStateValue, array, check_number, count, item, under

logger = logging.getLogger("vllm.camel")

#: Floor for a latency before its log (s): a request that finished in "0 s" stays finite.
LATENCY_FLOOR_S = 1e-6


@dataclass(frozen=True)
class ThompsonParams:
    """Tunables: the ``policy_params`` keys of the same names (defaults and their tuning in
    docs/policies.md).

    ``prior``: the base prior before any cost; with ``adaptive_prior`` its mean and noise
    scale then follow the costs seen (mean of all costs; beta0 = (alpha0 + 1) x the pooled
    within-cell variance). ``share_strength``: the most pseudo-observations of the other
    contexts' evidence a context's prior may carry (0: independent contexts).
    ``additive_kappa``: the cap on the additive grid model's weight in a prior (0: Camel's flat
    prior), ``additive_kappa_low_load`` the cap in the lowest load bucket of the contextual
    policy (safe with change detection on). ``slo_min_evidence``: weight of latency
    observations an arm needs before the SLO guard may leave it out. ``queue_guard``: leave
    out caps below the requests in the engine (contextual policy). ``change_threshold`` (h,
    0: off) and ``change_drift`` (k): the CUSUM of :mod:`.change`.
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


class ThompsonPolicy(ContextPriors, Policy):
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
        self._grid = AdditiveGrid(self._freq_key, batches)
        self._additive_kappa = params.additive_kappa
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
        self._changes = ChangeDetector(shape[0], threshold=params.change_threshold, drift=params.change_drift)
        self.changes_detected = 0
        self._rebuild_totals()
        if slo is not None:
            import scipy.stats  # noqa: F401  (import now, not inside the first select)

    # ------------------------------------------------------------------ protocol
    def select(self, decision: DecisionInput) -> int:
        context, available, current = decision.context, decision.available, decision.current
        idx = np.asarray(available, dtype=np.intp)
        if idx.size == 0:
            raise ValueError("select() needs at least one available arm")
        if decision.snapshot is not None:  # the engine's demand, for the queue guard
            self._demand = int(decision.snapshot.num_running) + int(decision.snapshot.num_waiting)
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
            idx = queue_allowed(idx, self._batch, self._demand)
        if self.slo is not None:
            idx = self._slo_allowed(c, idx)
        return int(idx[np.argmin(draws[idx])])

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        if not math.isfinite(cost):
            logger.warning("camel: ignoring non-finite cost %r for arm %d", cost, arm_index)
            return
        row, weight = self._row(context), float(weight)
        if not weight > 0.0:
            return
        if self.params.change_threshold > 0.0 and self._changes.observe(
            row, float(self.stats.n[row, arm_index]), float(self.stats.xbar[row, arm_index]), float(cost), weight,
            m2_cells=self._m2_cells, dof=self._dof,
        ):
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
        """Load a state after checking every value (a failure names the field, e.g.
        ``stats.n[0, 3] = -1.0 must be >= 0``, and changes nothing)."""
        if state.get("kind") != "nig-thompson":
            raise ValueError(f"state kind {state.get('kind')!r} is not nig-thompson")
        if count(state, "num_arms") != self.num_arms:
            raise BadStateValue("num_arms", f"= {state['num_arms']} but the policy has {self.num_arms} arms")
        rows = count(state, "num_contexts")
        if rows != self.stats.shape[0]:
            raise BadStateValue("num_contexts", f"= {rows} but the policy has {self.stats.shape[0]} contexts")
        stats = SufficientStats(self.stats.shape)
        with under("stats"):
            stats.load(item(state, "stats"))
        latency = SufficientStats(self.stats.shape)
        with under("latency"):
            latency.load(item(state, "latency"))
        raw_mean = item(state, "warm_mean")
        if not isinstance(raw_mean, list) or len(raw_mean) != self.num_arms:
            raise BadStateValue("warm_mean", f"= {raw_mean!r} is not a list of {self.num_arms} numbers or nulls")
        warm_mean = np.array([np.nan if v is None else check_number(v, f"warm_mean[{i}]", low=None)
                              for i, v in enumerate(raw_mean)])
        warm_kappa = array(item(state, "warm_kappa"), "warm_kappa", (self.num_arms,), low=0.0)
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
            self._changes.grow(c + 1)
            self._post_cache.clear()
            self._prior_cache.clear()
            self._slo_cache.clear()
        return c

    def _forget_row(self, row: int) -> None:
        """Drop context ``row``'s statistics after a detected change (its prior remains)."""
        logger.info("camel: the costs of context %d changed (CUSUM alarm); relearning it", row)
        for stats in (self.stats, self.latency):
            stats.n[row] = 0.0
            stats.xbar[row] = 0.0
            stats.m2[row] = 0.0
        self._changes.reset(row)
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

    def _slo_allowed(self, row: int, idx: np.ndarray) -> np.ndarray:
        """Available arms whose latency posterior does not break the SLO (never none)."""
        assert self.slo is not None
        quantiles = self._slo_cache.get(row)
        if quantiles is None:
            quantiles = latency_quantiles(self.latency, row, self.slo.quantile, self.params.slo_min_evidence)
            self._slo_cache[row] = quantiles
        return slo_allowed(idx, quantiles, math.log(self.slo.threshold_s))  # log-latency quantiles


# ------------------------------------------------------------------ declarations
def _build(name: str) -> Any:
    def build(inputs: BuildInputs) -> Policy:
        p = inputs.params
        return ThompsonPolicy(
            name=name, num_arms=len(inputs.arms), num_contexts=inputs.num_contexts,
            contextual=name == "camel-ts" and inputs.config.contextual, rng=inputs.rng,
            arm_freqs_hz=[a.freq_hz for a in inputs.arms.arms], arm_batches=[a.max_batch for a in inputs.arms.arms],
            params=ThompsonParams(
                prior=NIGPrior(mean=p["prior_mean"], kappa=p["prior_kappa"], alpha=p["prior_alpha"],
                               beta=p["prior_beta"]),
                share_strength=p["share_strength"], additive_kappa=p["additive_kappa"],
                adaptive_prior=p["adaptive_prior"], slo_min_evidence=p["slo_min_evidence"],
                queue_guard=p["queue_guard"], additive_kappa_low_load=p["additive_kappa_low_load"],
                change_threshold=p["change_threshold"], change_drift=p["change_drift"],
            ),
            switch_cost=inputs.config.switch_cost, slo=inputs.config.slo,
        )

    return build


def _params(additive_kappa: float, change_threshold: float) -> tuple[Param, ...]:
    d = ThompsonParams()
    return (
        Param("prior_mean", d.prior.mean, number(), "prior mean cost"),
        Param("prior_kappa", d.prior.kappa, number(positive=True), "prior pseudo-observations of the mean"),
        Param("prior_alpha", d.prior.alpha, number(positive=True), "prior shape of the noise"),
        Param("prior_beta", d.prior.beta, number(positive=True), "prior scale of the noise"),
        Param("share_strength", d.share_strength, number(non_negative=True),
              "pseudo-observations a context's prior takes from the others"),
        Param("additive_kappa", additive_kappa, number(non_negative=True), "weight cap of the additive grid prior"),
        Param("adaptive_prior", d.adaptive_prior, flag, "the base prior follows the costs seen"),
        Param("slo_min_evidence", d.slo_min_evidence, number(non_negative=True),
              "latency evidence before the SLO guard may leave an arm out"),
        Param("queue_guard", d.queue_guard, flag, "leave out caps below the requests in the engine"),
        Param("additive_kappa_low_load", d.additive_kappa_low_load, number(non_negative=True),
              "the additive prior's cap in the lowest load bucket"),
        Param("change_threshold", change_threshold, number(non_negative=True), "CUSUM threshold h (0: off)"),
        Param("change_drift", d.change_drift, number(non_negative=True), "CUSUM drift k"),
    )


#: ``neighbour_kappa`` was removed: the value that behaves as before (still accepted) and why.
_REMOVED = {"neighbour_kappa": (0, "removed: a study knob (grid-neighbour prior) that never became a default; "
                                   "additive_kappa (the additive grid prior) does its work; leave it out")}

DECLARATIONS = (
    PolicyDeclaration("camel-ts", "request-level contextual Thompson sampling (the previous camel)", _build("camel-ts"),
                      params=_params(ThompsonParams.additive_kappa, ThompsonParams.change_threshold),
                      removed=_REMOVED, listing=1),
    PolicyDeclaration("ts", "Camel's paper bandit: Gaussian Thompson sampling on request costs, one context",
                      _build("ts"), params=_params(0.0, 0.0), removed=_REMOVED, listing=2),
)
