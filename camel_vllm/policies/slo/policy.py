"""``slo``: SLO-aware frequency scaling after throttLL'eM (arXiv 2408.05235).

Each decision epoch the policy projects the SLO metric (``tpot``, ``e2e`` or ``ttft``) of the
requests running and waiting under every available arm, with the one online model of step time
against clock and work (:class:`~camel_vllm.policies.model_based.board.BoardModel`: its own, or
the inner policy's where that learns one, as camel does), and keeps the arms whose projection
meets ``config.slo`` and that keep up at a full batch with the arrival rate of the one workload
estimate (:mod:`camel_vllm.policies.workload`, fed by the controller): the *safe set*. Alone
(``frequency_only``) it keeps the largest batch cap and picks the lowest safe frequency, as
throttLL'eM scales frequency only; with
``inner`` (e.g. camel) the inner policy chooses among the safe set. A guard, moved by
stochastic quantile tracking on finished requests, scales every projection so the observed
violation rate settles below the allowed one. docs/seed-systems.md has the projections, the
capacity check, the guard and the measurements that shaped them.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.core.events import Arm, Context, EngineSnapshot, IterationWork, RequestOutcome
from camel_vllm.policies.base import ArmEstimate, Policy
from camel_vllm.policies.decision import Deadline, DecisionInput
from camel_vllm.policies.declaration import BuildInputs, PolicyDeclaration
from camel_vllm.policies.model_based.board import BoardModel, segment_knots, work_terms
from camel_vllm.policies.slo.filter import slo_allowed, slo_metric_s
from camel_vllm.policies.state_values import item, number, under
from camel_vllm.policies.workload import WorkloadEstimator

logger = logging.getLogger("vllm.camel")

#: Output length assumed before any request has finished (tokens): the Azure conversation
#: trace's median output, 129 (../shared/traces/SOURCES.md).
DEFAULT_OUTPUT_TOKENS = 128
#: Iterations observed (at any arm) before the policy leaves the default arm.
WARMUP_ITERATIONS = 16
#: Guard: aim the violation rate at this share of the allowed 1 - quantile (margin).
GUARD_TARGET_SHARE = 0.5
GUARD_STEP = 0.05
GUARD_MIN, GUARD_MAX = 0.5, 16.0
#: Smoothing of the per-iteration prefill tokens and per-request context (EWMA weight).
EWMA_WEIGHT = 0.05
#: Capacity must exceed the arrival rate by this share (headroom for bursts).
CAPACITY_MARGIN = 0.1
#: Never project a step shorter than this (s): a sanity floor for a model with little data.
MIN_STEP_S = 1e-4
#: A tracked request unseen for this many iterations was aborted or preempted: forget it.
STALE_ITERATIONS = 200


@dataclass
class _Running:
    """What the policy knows of a running request: decode steps and service time so far."""

    decode_tokens: int = 0
    service_s: float = 0.0
    last_iteration: int = 0


@dataclass(frozen=True)
class _Inputs:
    """What every arm's projection shares in one decision (computed once per epoch): the
    arrival rate (requests/s) and mean prompt (tokens) of the workload estimate among it."""

    running: list[_Running]
    remaining: list[float]
    mean_out: float
    rate_per_s: float = 0.0
    mean_prompt: float = 0.0


class SLOPolicy(Policy):
    """The ``slo`` policy; see the module docstring."""

    name = "slo"
    workload: WorkloadEstimator  # the one estimate: the inner policy's where it reads one, else its own

    def __init__(
        self,
        config: CamelConfig,
        arms: ArmSet,
        num_contexts: int = 1,
        inner: Policy | None = None,
        *,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        frequency_only: bool | None = None,
    ) -> None:
        if config.slo is None:
            raise ConfigError("slo", None, "policy slo needs an slo section (metric, threshold_s, quantile)")
        self.slo = config.slo
        self.arms = arms
        self.num_contexts = num_contexts
        self.inner = inner
        self.frequency_only = inner is None if frequency_only is None else frequency_only
        self.workload = WorkloadEstimator()  # the controller feeds it (or the inner policy's, below)
        #: The step-time model where the inner policy learns none (else None: :meth:`_board`).
        self.own_board: BoardModel | None = None
        if inner is not None:
            self.name = f"slo+{inner.name}"  # paced as the inner policy (registry.cadence_of)
            if inner.workload is not None:
                self.workload = inner.workload
        if inner is None or inner.board is None:
            self.own_board = BoardModel([a.freq_hz for a in arms.arms], knots=segment_knots(max(arms.batch_sizes)))
        self._clocks_hz = self._board().clocks_hz
        self._top_hz = float(self._clocks_hz[-1])
        self.guard = 1.0
        self.default_output_tokens = default_output_tokens
        self.requests_met = 0
        self.requests_judged = 0
        self.fallbacks = 0
        self.decisions = 0
        self.last_safe: list[int] = []
        self._snapshot: EngineSnapshot | None = None
        self._running: dict[str, _Running] = {}
        self._iteration = 0
        self._prefill_per_iter = 0.0
        self._context_per_request = 0.0

    # ------------------------------------------------------------------ hooks
    def observe_arrival(self, now_s: float, prompt_tokens: int) -> None:
        """Hand arrivals to an inner policy that learns from them (camel)."""
        if self.inner is not None:
            self.inner.observe_arrival(now_s, prompt_tokens)

    def observe_iteration(self, arm_index: int, work: IterationWork, duration_s: float,
                          energy_j: float | None = None, *, freq_hz: float | None = None,
                          switched: bool = False) -> None:
        """Learn the iteration time; count decode steps and service time per request (and
        hand the iteration to an inner policy that learns from iterations: camel)."""
        if self.inner is not None:
            if freq_hz is None and not switched:
                self.inner.observe_iteration(arm_index, work, duration_s, energy_j)
            else:
                self.inner.observe_iteration(arm_index, work, duration_s, energy_j, freq_hz=freq_hz,
                                             switched=switched)
        self._iteration += 1
        if self.own_board is not None and not switched:  # an inner policy's board it teaches itself
            freq = self.arms[arm_index].freq_hz if freq_hz is None else freq_hz
            self.own_board.observe(self._top_hz if freq is None else freq, work, duration_s, energy_j)
        w = EWMA_WEIGHT
        self._prefill_per_iter += w * (work.num_prefill_tokens - self._prefill_per_iter)
        if work.num_decode_tokens:
            per_req = work.context_tokens / work.num_decode_tokens
            self._context_per_request += w * (per_req - self._context_per_request)
        for request_id, tokens in work.tokens_by_request.items():
            state = self._running.get(request_id)
            if state is None:
                state = self._running[request_id] = _Running()
            state.service_s += duration_s
            state.last_iteration = self._iteration
            if tokens == 1:
                state.decode_tokens += 1
        if self._iteration % STALE_ITERATIONS == 0:
            horizon = self._iteration - STALE_ITERATIONS
            for rid in [r for r, s in self._running.items() if s.last_iteration < horizon]:
                del self._running[rid]

    def observe_outcome(self, outcome: RequestOutcome) -> None:
        """Forget the request and move the guard (and hand the outcome to an inner policy that
        learns from outcomes); its output length is the workload estimate's, which the
        controller feeds."""
        if self.inner is not None:
            self.inner.observe_outcome(outcome)
        request = outcome.request
        self._running.pop(request.request_id, None)
        value = self.measured(outcome)
        if value is None:
            return
        violated = value > self.slo.threshold_s
        self.requests_judged += 1
        self.requests_met += not violated
        target = GUARD_TARGET_SHARE * (1.0 - self.slo.quantile)
        log_guard = math.log(self.guard) + GUARD_STEP * ((1.0 if violated else 0.0) - target)
        self.guard = min(GUARD_MAX, max(GUARD_MIN, math.exp(log_guard)))

    def measured(self, outcome: RequestOutcome) -> float | None:
        """The request's value of the SLO metric (s), or ``None`` if it has none."""
        return slo_metric_s(outcome, self.slo.metric)

    @property
    def attainment(self) -> float | None:
        """Share of finished requests that met the SLO so far."""
        return self.requests_met / self.requests_judged if self.requests_judged else None

    # ----------------------------------------------------------------- policy
    def select(self, decision: DecisionInput) -> int:
        available = decision.available
        if decision.snapshot is not None:
            self._snapshot = decision.snapshot
        self.decisions += 1
        if self.frequency_only:
            available = self._largest_batch(available)
        if not self._learned():
            safe = [self._default(available)]
        else:
            inputs = self._inputs(decision)
            keeping = np.array([i for i in available if self.keeps_up(i, inputs)], dtype=np.intp)
            if keeping.size:  # the arms that meet the SLO, else the best projection among them
                projected = np.full(len(self.arms), np.nan)
                projected[keeping] = [self.project(int(i), inputs) for i in keeping]
                allowed = slo_allowed(keeping, projected, self.slo.threshold_s)
                self.fallbacks += bool(projected[allowed[0]] > self.slo.threshold_s)
                safe = [int(i) for i in allowed]
            else:  # none keeps up: the largest capacity (fastest clock, largest cap)
                self.fallbacks += 1
                safe = [self._default(available)]
        self.last_safe = safe
        if self.inner is not None:
            return self.inner.select(decision.among(safe))
        return self._lowest_frequency(safe)

    def _learned(self) -> bool:
        """Whether the step-time model has WARMUP_ITERATIONS (the own one folded first)."""
        board = self._board()
        if self.own_board is not None:
            board.fold()
        return board.iterations >= WARMUP_ITERATIONS and board.time.weight > 0.0

    def _inputs(self, decision: DecisionInput | None = None) -> "_Inputs":
        running = list(self._running.values())
        workload = decision.workload if decision is not None and decision.workload is not None else self.workload
        now_s = self._snapshot.now_s if self._snapshot is not None else 0.0
        view = workload.view(now_s) if workload.arrivals else None
        return _Inputs(
            running=running,
            remaining=self._mean_residual([r.decode_tokens for r in running], workload),
            mean_out=self._mean_residual([0], workload)[0],
            rate_per_s=view.rate_per_s if view is not None else 0.0,
            mean_prompt=view.mean_prompt if view is not None else 0.0,
        )

    def _step_s(self, freq_hz: float | None, prefill_tokens: float, decode_requests: float,
                context_tokens: float) -> float:
        """Projected duration of a step doing this work at ``freq_hz`` (s; the top clock for
        ``None``), guard included: the board's cautious time (a clock whose speed is not known
        yet is taken to be slow; :meth:`BoardModel.cautious_step_s`)."""
        board = self._board()
        terms = work_terms(prefill_tokens, decode_requests, context_tokens, board.knots)
        step_s = board.cautious_step_s(self._top_hz if freq_hz is None else freq_hz, terms)
        return max(MIN_STEP_S, step_s) * self.guard

    def project(self, arm_index: int, inputs: "_Inputs | None" = None) -> float:
        """The projected SLO metric (s, guard included) if ``arm_index`` runs from now."""
        inputs = inputs or self._inputs()
        arm = self.arms[arm_index]
        snap = self._snapshot
        running, remaining, mean_out = inputs.running, inputs.remaining, inputs.mean_out
        n_run = max(len(running), snap.num_running if snap else 0)
        n_wait = snap.num_waiting if snap else 0
        cap = max(1, arm.max_batch)
        # the cap limits admission, not requests already running (they keep decoding)
        active = max(n_run, min(n_run + n_wait, cap))
        context = active * (self._context_per_request + 0.5 * mean_out)
        step_s = self._step_s(arm.freq_hz, self._prefill_per_iter, active, context)
        if self.slo.metric == "tpot":
            return step_s
        # a waiting request gets a slot when one of the running finishes (rounds of the cap)
        free_slots = max(0, cap - n_run)
        first_free_s = (min(remaining) if remaining else 0.0) * step_s
        if self.slo.metric == "ttft":
            # the q-th waiting request waits for the prefill of those ahead of it and its own;
            # with nobody waiting, a typical newcomer's prefill is projected
            queued = (snap.waiting_prompt_tokens if snap and n_wait else inputs.mean_prompt)
            ahead = self.slo.quantile * queued if n_wait else queued
            prefill_s = self._step_s(arm.freq_hz, max(ahead, self._prefill_per_iter), n_run, context)
            return prefill_s + (first_free_s if free_slots == 0 and n_wait else 0.0) + step_s
        values = [r.service_s + rem * step_s for r, rem in zip(running, remaining, strict=False)]
        for k in range(n_wait):
            rounds = 0 if k < free_slots else 1 + (k - free_slots) // cap
            values.append(rounds * max(first_free_s, mean_out * step_s / 2) + mean_out * step_s)
        if not values:
            return step_s * mean_out
        return float(np.quantile(values, self.slo.quantile))

    def keeps_up(self, arm_index: int, inputs: "_Inputs | None" = None) -> bool:
        """Whether the arm, at a full batch, serves requests faster than they arrive.

        Below that rate the queue grows without bound, which no per-epoch projection of the
        requests present sees in time (docs/seed-systems.md). Capacity = cap / (mean output x
        full-batch iteration time), against the workload estimate's arrival rate plus ``CAPACITY_MARGIN``.
        """
        inputs = inputs or self._inputs()
        rate = inputs.rate_per_s
        if rate <= 0.0:
            return True
        arm = self.arms[arm_index]
        cap = max(1, arm.max_batch)
        context = cap * (self._context_per_request + 0.5 * inputs.mean_out)
        prefill = self._prefill_per_iter  # observed prefill tokens per iteration (EWMA)
        step_s = self._step_s(arm.freq_hz, prefill, cap, context)
        return cap / (inputs.mean_out * step_s) >= rate * (1.0 + CAPACITY_MARGIN)

    def step_frequency(self, work: IterationWork, arm: Arm, snapshot: EngineSnapshot | None = None) -> float | None:
        """The inner policy's clock for this step (a per-step rule such as voltana's), else the arm's."""
        if self.inner is not None:
            return self.inner.step_frequency(work, arm, snapshot)
        return arm.step_freq_hz(work)

    def maintain(self, deadline: Deadline) -> None:
        """Between decisions: the inner policy's housekeeping (see ThompsonPolicy.maintain)."""
        if self.inner is not None:
            self.inner.maintain(deadline)

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        if self.inner is not None:
            self.inner.observe(arm_index, context, cost, weight)

    def estimates(self) -> list[ArmEstimate]:
        return self.inner.estimates() if self.inner is not None else []

    def state_dict(self) -> dict[str, Any]:
        """The guard, the own board model and workload estimate (``None`` where they are the
        inner policy's, which saves them) and the inner policy's state."""
        own_workload = self.inner is None or self.inner.workload is None
        return {
            "policy": "slo",
            "guard": self.guard,
            "model": self.own_board.state_dict() if self.own_board is not None else None,
            "workload": self.workload.state_dict() if own_workload else None,
            "inner": self.inner.state_dict() if self.inner is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state after checking every value (a failure names the field, e.g.
        ``inner.workload.prompts[0]``, and changes nothing). A ``model`` in the form before the
        board model (an ``a``/``b`` regression) is not this model: it is set aside with one
        log line and the board is learned afresh."""
        guard = number(state, "guard", default=1.0, low=GUARD_MIN, high=GUARD_MAX)
        model = item(state, "model", None)
        workload = item(state, "workload", None)
        inner = item(state, "inner", None)
        fresh_board, fresh_workload = copy.deepcopy((self.own_board, self.workload))
        if isinstance(model, Mapping) and "a" in model and "time" not in model:
            logger.info("camel: slo state: its step-time model is the regression before the board model; "
                        "learning the board afresh")
        elif model and fresh_board is not None:
            with under("model"):
                fresh_board.load_state_dict(model)
        own_workload = self.inner is None or self.inner.workload is None
        if workload and own_workload:
            with under("workload"):
                fresh_workload.load_state_dict(workload)
        if self.inner is not None and inner is not None:
            with under("inner"):
                self.inner.load_state_dict(inner)  # last: it changes nothing when it refuses
        self.guard, self.own_board = guard, fresh_board
        if workload and own_workload:
            self.workload.load_state_dict(workload)  # in place: the controller feeds this one

    def set_prior_means(self, means: Sequence[float], strength: float) -> None:
        """Warm start passes through to the inner policy (the SLO model needs no prior; an inner
        policy that takes no prior means raises NotImplementedError)."""
        if self.inner is not None:
            self.inner.set_prior_means(means, strength)

    # -------------------------------------------------------------- internals
    def _board(self) -> BoardModel:
        """The step-time model in force: the inner policy's (read anew: loading its state
        replaces it), else the own one."""
        if self.own_board is not None:
            return self.own_board
        assert self.inner is not None and self.inner.board is not None
        return self.inner.board

    def _largest_batch(self, available: Sequence[int]) -> list[int]:
        """The available arms with the largest batch cap available (one per frequency)."""
        cap = max(self.arms[i].max_batch for i in available)
        return [i for i in available if self.arms[i].max_batch == cap]

    def _default(self, available: Sequence[int]) -> int:
        return max(available, key=lambda i: (self._freq(i), self.arms[i].max_batch))

    def _lowest_frequency(self, safe: Sequence[int]) -> int:
        return min(safe, key=lambda i: (self._freq(i), -self.arms[i].max_batch))

    def _freq(self, index: int) -> float:
        freq = self.arms[index].freq_hz
        return -1.0 if freq is None else freq

    def _mean_residual(self, produced: Sequence[int], workload: WorkloadEstimator) -> list[float]:
        """E[L - k | L > k] for each k in ``produced`` (tokens, at least 1), from the output
        lengths the workload estimate remembers."""
        return workload.mean_residual_output(np.asarray(produced, dtype=np.int64),
                                             self.default_output_tokens).tolist()


def _build(inputs: BuildInputs) -> Policy:
    """The SLO policy (after throttLL'eM) around an optional inner policy.

    ``policy_params.inner`` absent, ``null`` or ``"none"``: frequency-only, as throttLL'eM (the
    lowest SLO-safe frequency at the largest batch cap); a policy name: that policy chooses among
    the SLO-safe arms, built without ``slo`` (this policy owns the guard) from its own params."""
    inner_name = inputs.params.get("inner")
    inner = None
    if inner_name is not None and inner_name != "none":
        assert inputs.make_inner is not None
        inner = inputs.make_inner(inner_name, {k: v for k, v in inputs.params.items() if k != "inner"})
    return SLOPolicy(inputs.config, inputs.arms, inputs.num_contexts, inner)


DECLARATION = PolicyDeclaration(
    "slo", "SLO-aware frequency scaling after throttLL'eM (needs slo), alone or around an inner policy", _build,
    wraps_inner=True, listing=10,
)
