"""``camel``: model-based Thompson sampling over (clock, batch cap) arms.

Each decision draws the board's time and energy models from their posteriors
(:mod:`~camel_vllm.policies.model_based.board`), projects what every available arm would do
to the requests running, waiting and expected to arrive (:mod:`~camel_vllm.policies.
model_based.projection`), corrects the projection by what finished requests have shown
(:mod:`~camel_vllm.policies.model_based.correction`) and plays the arm with the lowest
projected cost under the draw. Arms are tried where the models are unsure, not on a
schedule; a model that has seen one clock extrapolates to the others with the roofline's
shape and is never allowed to project a lower clock faster than the highest.

Until the board model has ``warmup_iterations`` iterations and ``warmup_requests`` requests have
shown their sizes (64 iterations and 32 requests by default), the policy plays the default arm
(highest clock, largest cap: vLLM left alone). Costs handed to :meth:`observe` are not used: the
policy learns from iterations (``observe_iteration``) and finished requests (``observe_outcome``).
"""

from __future__ import annotations

import copy

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import SLOConfig
from camel_vllm.core.events import Arm, Context, EngineSnapshot, IterationWork, RequestOutcome
from camel_vllm.policies.base import ArmEstimate, ModelReadout, Policy
from camel_vllm.policies.decision import Deadline, DecisionInput
from camel_vllm.policies.declaration import BuildInputs, Cadence, Param, PolicyDeclaration, choice, flag, integer
from camel_vllm.policies.model_based.board import NUM_WORK_TERMS, BoardModel, ClockCoefficients, segment_knots
from camel_vllm.policies.model_based.correction import OutcomeCorrection
from camel_vllm.policies.model_based.load_checks import LoadChecks
from camel_vllm.policies.model_based.projection import (
    ArmGeometry,
    ClockSteps,
    Projection,
    QueueState,
    Steady,
    SteadyChunk,
    SteadyStart,
    clock_steps,
    settle,
    steady_chunk,
    steady_finish,
    steady_start,
    step_work,
)
from camel_vllm.policies.model_based.probing import Prober
from camel_vllm.policies.model_based.switching import SwitchCost
from camel_vllm.policies.slo.filter import slo_allowed
from camel_vllm.policies.workload import MIN_FINISHED, WorkloadEstimator
from camel_vllm.policies.state_values import BadStateValue, count, item, under

logger = logging.getLogger("vllm.camel")

#: Iterations the board model sees (at the default arm) before the policy leaves it: two
#: folds of the regressions.
WARMUP_ITERATIONS = 64
#: Added to measured and projected mean waits before their ratio (s): about a decode step,
#: so waits of a few steps do not swing the wait correction.
WAIT_FLOOR_S = 0.05
#: Service time assumed for the burst timescale before the first projection (s).
DEFAULT_SERVICE_WINDOW_S = 5.0
#: How much less capacity than projected an arm is also judged with (the projection of a
#: saturated default arm is within ~10-20 % of the simulated throughput: test_model_based).
CAPACITY_DOUBT = 0.1
CAPACITY_DOUBT_MAX = 0.5
DOUBT_PER_SQRT_REQUESTS = 1.0
#: An exploratory choice is made only among arms whose cost at the posterior mean is within
#: this share of the best arm's: one epoch of exploration never risks more (a draw that makes
#: a clock's energy look a tenth of the top clock's would otherwise buy any queue).
EXPLORE_MARGIN = 0.1
#: An arm is played instead of the default arm only if its cost at the posterior mean is at
#: least this share below the default arm's: a projected gain smaller than the margin camel is
#: judged by (2 %, "no harm") is within the projection's error, and near saturation chasing it
#: lost (docs/camel-model.md, the H100 at loads 0.8-1.0).
DEVIATION_HURDLE = 0.02
#: The queue-free projection (:func:`~camel_vllm.policies.model_based.projection.steady_start`)
#: is computed ahead of a decision, in three parts on the iterations expected to come this
#: many iterations (or steps of the recent length) before it and the two after, so the
#: decision itself only prices the queue. A decision that comes before the first two are done
#: (an early decision, one after an idle engine, one at the end of an epoch of a few long
#: steps) is treated as early; one that finds only the last part left does it first.
STEADY_LEAD_ITERATIONS = 3
#: An early decision projects the steady state again only when the arrival rate moved by more
#: than this (log ratio; 0.22 = 25 %) since the last projection.
EARLY_RATE_TOLERANCE = 0.22
#: Decision epochs end after this many seconds unless configured (``epoch_s``): 64 decode
#: steps (the iteration bound) take ~1.5-2.5 s on the emulated Orin, but 64 steps that carry
#: 2,000-token prefills take ~25 s, too slow for bursts that come and go in seconds.
DEFAULT_EPOCH_S = 2.0
#: Memory of the per-arm spread between a posterior draw and the mean (for metrics).
SPREAD_MEMORY = 20.0


@dataclass(frozen=True)
class ModelParams:
    """Settings of the ``camel`` policy (``policy_params`` keys of the same names).

    ``warmup_iterations`` and ``warmup_requests``: iterations the board model must have seen
    and requests that must have finished before the first model-based choice (until then the
    default arm). ``probe``: decode steps at clocks the board model has not seen
    (:mod:`~camel_vllm.policies.model_based.probing`). ``board_prior`` (``none`` or ``profile``)
    is read by the factory.
    """

    warmup_iterations: int = WARMUP_ITERATIONS
    warmup_requests: int = MIN_FINISHED
    probe: bool = True


class ModelBasedPolicy(Policy):
    """The ``camel`` policy; see the module docstring."""

    name = "camel"
    workload: WorkloadEstimator  # its own estimate of the load, always (fed by the controller)
    board: BoardModel  # its model of the board, always (an slo wrapper reads it)

    def __init__(
        self,
        arms: ArmSet,
        rng: np.random.Generator,
        *,
        switch_cost: float = 0.0,
        slo: SLOConfig | None = None,
        token_budget: int | None = None,
        params: ModelParams = ModelParams(),
        switch_latency_s: float = 0.0,
    ) -> None:
        self.arms = arms
        self.rng = rng
        self.switch_cost = float(switch_cost)
        self.slo = slo
        self.params = params
        top = max((a.freq_hz for a in arms.arms if a.freq_hz is not None), default=None)
        self._arm_freq = np.array([top if a.freq_hz is None else a.freq_hz for a in arms.arms] if top else
                                  [1.0] * len(arms), dtype=float)
        self._clocks, self._clock_of_arm = np.unique(self._arm_freq, return_inverse=True)
        self._top_clock = int(np.argmax(self._clocks))
        self._caps = np.array([a.max_batch for a in arms.arms], dtype=float)
        knots = segment_knots(int(self._caps.max()))
        # The clock of each arm's prefill steps (its own where it has none other): the clock follows the work.
        prefill = [a.prefill_freq_hz if a.prefill_freq_hz is not None else f
                   for a, f in zip(arms.arms, self._arm_freq, strict=False)]
        prefill_index = np.searchsorted(self._clocks, np.array(prefill, dtype=float))
        self._geometry = ArmGeometry.of(self._caps, self._clock_of_arm, knots, prefill_index)
        #: What a clock switch for a step's work costs (declared by the device, then measured).
        self.switching = SwitchCost(switch_latency_s)
        #: Probe runs at clocks the board model has not seen (none when ``params.probe`` is off).
        self.prober = Prober([a.freq_hz for a in arms.arms] if params.probe else [])
        self._default_index = int(np.argmax(self._arm_freq * 1e3 + self._caps))  # top clock, largest cap
        self._work: np.ndarray | None = None  # projection.step_work at the last refresh
        #: (mean, draw, mean in doubt) x clock x (time, energy) x work terms
        self._coef_buffer = np.empty((3, len(self._clocks), 2, NUM_WORK_TERMS))
        self._chores: list[Callable[[], None]] = []  # this epoch's chores (set once the board exists)
        #: The recent step length (s).
        self._step_s = 0.0
        self._steady: Steady | None = None
        #: The steady state in the making: after _start_steady, then after _chunk_steady.
        self._steady_half: SteadyStart | SteadyChunk | None = None
        self._drawn: ClockCoefficients | None = None
        #: The arms' steps under the mean and the draw (projection.clock_steps), made with the
        #: draw, and the (mean, draw, step work) they were made from.
        self._steps: tuple[ClockSteps, tuple[Any, ...]] | None = None
        #: The (energy, service, wait) factors the projection in the making uses.
        self._steady_factors: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.load_checks = LoadChecks(self._caps)
        self.board = BoardModel([a.freq_hz for a in arms.arms], knots=knots)
        self.workload = WorkloadEstimator(token_budget, min_finished=params.warmup_requests)
        self.correction = OutcomeCorrection()
        self._chores = self._chore_list()
        self._snapshot: EngineSnapshot | None = None
        self._last_now_s = 0.0
        self.decisions = 0
        #: Decisions made with the model (past the warm-up).
        self.model_decisions = 0
        #: Decisions where the Thompson draw chose another arm than the posterior mean would.
        self.exploratory_decisions = 0
        self.pulls = np.zeros(len(arms))
        #: The posterior-mean projection in force and the (energy, service, wait) factors it used.
        self._in_force: tuple[Projection, float, float, float] | None = None
        self._in_force_index: int | None = None
        self._cost_mean = np.full(len(arms), np.nan)
        self._spread2 = np.zeros(len(arms))
        #: Timescale (s) at which arrival clumps matter: the default arm's mean service time.
        self._service_window_s = DEFAULT_SERVICE_WINDOW_S

    # ------------------------------------------------------------------ hooks
    def observe_arrival(self, now_s: float, prompt_tokens: int) -> None:
        self.switching.observe_prompt()
        self.load_checks.observe_arrival()
        self._last_now_s = max(self._last_now_s, now_s)

    def observe_iteration(self, arm_index: int, work: IterationWork, duration_s: float,
                          energy_j: float | None = None, *, freq_hz: float | None = None,
                          switched: bool = False) -> None:
        step_hz = self.arms[arm_index].freq_hz if freq_hz is None else freq_hz
        if switched:
            # A step the clock was switched for: its time holds the switch's stall, which the
            # board model must not learn as the clock's speed; the excess over the model is the
            # switch's cost, measured.
            self.switching.observe(self.board, step_hz, work, duration_s, energy_j)
        else:
            self.board.observe(step_hz, work, duration_s, energy_j)
            self.prober.observe(step_hz, work)
        self.switching.observe_step(work)
        if duration_s > 0.0:
            self._step_s += 0.1 * (duration_s - self._step_s)

    def step_frequency(self, work: IterationWork, arm: Arm, snapshot: EngineSnapshot | None = None) -> float | None:
        """The arm's rule, or a probe run's clock (:class:`~camel_vllm.policies.model_based.probing.Prober`)."""
        return self.prober.step_frequency(work, arm, snapshot)

    def observe_outcome(self, outcome: RequestOutcome) -> None:
        request = outcome.request
        in_force = self._in_force
        first_s = outcome.first_scheduled_s
        if in_force is None or first_s is None:
            return
        proj, energy_scale, service_scale, wait_scale = in_force
        p, o = float(request.prompt_tokens), float(request.output_tokens)
        e_proj = s_proj = decode_share = 0.0
        decode_shares = np.broadcast_to(proj.decode_share, proj.edp_js.shape)
        for (_, arm), share in outcome.arm_shares.items():
            e_proj += share * (proj.energy_prompt_j[arm] * p + proj.energy_output_j[arm] * o)
            s_proj += share * (proj.service_fixed_s[arm] + proj.service_prompt_s[arm] * p
                               + proj.service_output_s[arm] * o)
            decode_share += share * float(decode_shares[arm])
        if outcome.decode_steps > 0:
            self.correction.observe_shares(outcome.decode_shares / outcome.decode_steps, decode_share,
                                           outcome.decode_steps)
        # Against the model alone: the corrections in force are taken back out.
        energy = outcome.energy_j if outcome.energy_measured else None
        self.correction.observe((energy, max(0.0, request.finish_s - first_s)),
                                (e_proj / energy_scale, s_proj / service_scale))
        if self._in_force_index is not None:
            self.correction.observe_wait(max(0.0, first_s - request.arrival_s),
                                         float(proj.wait_s[self._in_force_index]) / wait_scale)

    def maintain(self, deadline: Deadline) -> None:
        """Between decisions (the controller calls this on the iterations of an epoch), one
        chore per call so no iteration pays for all of them: the board model takes its
        buffered iterations and re-solves, the load is measured, and, once the decision is
        within STEADY_LEAD_ITERATIONS steps (of the recent length) of ``deadline``, the arms
        are projected without the queue; the decision itself then only prices the queue."""
        if self._chores and (self._chores[-1] != self._start_steady
                             or deadline.within(STEADY_LEAD_ITERATIONS, STEADY_LEAD_ITERATIONS * self._step_s)):
            self._chores.pop()()

    def _chore_list(self) -> list[Callable[[], None]]:
        """This epoch's chores, popped from the end (fold first, the projection last)."""
        board = self.board
        return [self._finish_steady, self._chunk_steady, self._start_steady, self._make_steps, self._draw,
                self._measure_load, self._prepare, board.solve_energy, board.solve_time, board.fold_energy,
                board.fold_time, board.stage]

    def _prepare(self) -> None:
        """The board's per-clock corrections; the rest of its preparation comes with the draw."""
        if self._model_ready():
            self.board.refresh_corrections()

    def _draw(self) -> None:
        """The board model prepared (:meth:`BoardModel.prepare`) and the Thompson draw the next
        decision plays with."""
        self._drawn = self.board.explore(self.rng) if self._model_ready() else None

    def _make_steps(self) -> None:
        """Every arm's steps under the mean and the draw (the projection's first part, made
        ahead of it)."""
        if self._drawn is not None and self._work is not None:
            self._arm_steps(self.board.mean_coefficients(), self._drawn)

    def _arm_steps(self, mean: ClockCoefficients, draw: ClockCoefficients) -> ClockSteps:
        """Every arm's steps under the posterior mean (group 0), the draw (1) and the mean
        again (2, projected with less capacity), made once per (mean, draw, step work)."""
        key = (mean, draw, self._work)
        if self._steps is not None and all(a is b for a, b in zip(self._steps[1], key, strict=True)):
            return self._steps[0]
        coef = self._coef_buffer
        coef[0, :, 0], coef[0, :, 1] = mean.time_s, mean.energy_j
        coef[1, :, 0], coef[1, :, 1] = draw.time_s, draw.energy_j
        coef[2] = coef[0]
        assert self._work is not None  # set by the caller
        steps = clock_steps(self._geometry, coef, coef[:, self._top_clock, 0], self._work)
        self._steps = (steps, key)
        return steps

    def _measure_load(self) -> None:
        if self._model_ready():
            self.workload.measure_dispersion(self._last_now_s, self._service_window_s)
            # The steps a projection evaluates change with the request mix only: fixed until
            # the next epoch's refresh.
            self._work = step_work(self._geometry, self.workload.view(self._last_now_s))

    def _start_steady(self) -> None:
        """The first part of the queue-free projection of every arm: the posterior mean
        (group 0), a Thompson draw (group 1) and the mean with CAPACITY_DOUBT less capacity
        (group 2)."""
        if not self._model_ready():
            self._steady_half = None
            return
        factors = self._factors()
        mean, draw = self.board.mean_coefficients(), self._drawn or self.board.explore(self.rng)
        self._drawn = None
        load = self.workload.view(self._last_now_s)
        if self._work is None:
            self._work = step_work(self._geometry, load)
        steps = self._arm_steps(mean, draw)
        occupancy = self.load_checks.occupancy
        if occupancy > 1.0:
            load = load.scaled(occupancy)
        service = np.array([1.0, 1.0, 1.0 / (1.0 - self._capacity_doubt())]) * factors[1]
        self._steady_half = steady_start(self._geometry, steps, load, switch=self.switching,
                                         energy_scale=factors[0], service_scale=service, wait_scale=factors[2],
                                         share_scale=self.correction.share_factor())
        self._steady_factors = factors

    def _capacity_doubt(self) -> float:
        """How much less capacity than projected an arm is also judged with: CAPACITY_DOUBT, plus
        the sampling error of the request sizes the projection rests on (a mean output length
        from n finished requests of CV ~1 is off by ~1/sqrt(n); the first to finish are also the
        short ones), so a projection made on a few dozen requests is not trusted as one made on
        thousands. At most CAPACITY_DOUBT_MAX."""
        n = max(1, self.workload.finished)
        return min(CAPACITY_DOUBT_MAX, CAPACITY_DOUBT + DOUBT_PER_SQRT_REQUESTS / math.sqrt(n))

    def _chunk_steady(self) -> None:
        """The second part of the queue-free projection (the prefill chunk priced beside the
        mean number decoding): a chore of its own, so no iteration pays for the whole."""
        if isinstance(self._steady_half, SteadyStart):
            self._steady_half = steady_chunk(self._steady_half)

    def _finish_steady(self) -> None:
        if self._steady_half is not None:
            self._steady = steady_finish(self._steady_half)
            self._steady_half = None

    # ----------------------------------------------------------------- policy
    def select(self, decision: DecisionInput) -> int:
        """The arm with the lowest projected cost under a Thompson draw, among the arms whose
        cost at the posterior mean is within EXPLORE_MARGIN of the best (exploration never
        risks more than that on one epoch), projected over the epoch ``decision`` bounds. The
        default arm until the model is ready."""
        idx = np.asarray(decision.available, dtype=np.intp)
        if idx.size == 0:
            raise ValueError("select() needs at least one available arm")
        current = decision.current
        snapshot = decision.snapshot
        if snapshot is not None:
            self._snapshot = snapshot
            self._last_now_s = max(self._last_now_s, snapshot.now_s)
        self.decisions += 1
        self.load_checks.check_capacity(self._snapshot, self.correction, self._service_window_s)
        if not self._model_ready():
            while self._chores:  # what maintain() did not get to (or no maintain at all)
                self._chores.pop()()
            choice = self._default(idx)
        else:
            self.model_decisions += 1
            self.load_checks.check_occupancy(self._snapshot)
            if self._steady is None:  # the first model decision: everything now
                while self._chores:
                    self._chores.pop()()
                self._start_steady()
                self._finish_steady()
            # A decision that comes before maintain() finished the epoch's refreshes (the
            # engine's demand doubled, or steps so long that the epoch ended within a few of
            # them) prices the queue now, at the arrival rate now, with the last epoch's steady
            # state: the queue and the rate are what moved, and the rest would cost the
            # decision a whole projection. Such a decision may only keep or speed up the clock.
            rate = None
            if len(self._chores) == 1 and self._chores[0] == self._finish_steady:
                self._chores.pop()()  # only the last part of the projection was left: no early decision
            if self._chores:
                rate = self.workload.rate_per_s(self._last_now_s) * self.load_checks.occupancy
                last = self._steady
                assert last is not None  # built above on the first model decision
                if abs(math.log(max(rate, 1e-9) / max(last.rate_per_s, 1e-9))) > EARLY_RATE_TOLERANCE:
                    self._start_steady()  # the rate itself moved: the steady state with it
                    self._finish_steady()
                    rate = None
            st = self._steady
            assert st is not None
            snap = self._snapshot
            queue = QueueState(snap.num_running, snap.num_waiting) if snap is not None else QueueState(0, 0)
            groups = settle(st, queue, decision.epoch_iterations, rate)
            mean = groups.take(0)
            self._in_force = (mean, *self._steady_factors)
            self._note_service_window(mean)
            costs = groups.edp_js if decision.cost is None else decision.cost.projected(
                groups.energy_j, groups.latency_s, groups.edp_js)
            cost_mean, scored = costs[0], costs[1]
            # An arm is judged by the worse of its mean projection and the same with
            # CAPACITY_DOUBT less capacity: near saturation a small error in capacity decides
            # between a queue that drains and one that grows, and only slower arms are exposed.
            robust = np.maximum(cost_mean, costs[2])
            self._cost_mean = cost_mean
            self._spread2 += ((scored - cost_mean) ** 2 - self._spread2) / SPREAD_MEMORY
            if self.switch_cost > 0.0 and current is not None:
                scored = scored * np.exp(self.switch_cost * (self._arm_freq != self._arm_freq[current]))
            allowed = self._slo_allowed(mean, idx) if self.slo is not None else idx
            if rate is not None and current is not None:
                # An early decision on the last epoch's steady state only speeds up: that
                # state underrates the waits a burst builds under the slower arms.
                faster = allowed[groups.capacity_per_s[0, allowed] >= groups.capacity_per_s[0, current]]
                if faster.size:
                    allowed = faster
            # Exploration only while nobody waits: with a queue, a slower epoch delays every
            # request in it, beyond what one epoch's projection charges the arm.
            margin = EXPLORE_MARGIN if queue.num_waiting == 0 else 0.0
            trusted = allowed[robust[allowed] <= (1.0 + margin) * float(robust[allowed].min())]
            default = self._default_index
            if default in allowed:  # an arm not clearly cheaper than vLLM's own configuration is not played
                clears = cost_mean[trusted] <= (1.0 - DEVIATION_HURDLE) * cost_mean[default]
                clear = trusted[(trusted == default) | clears]
                trusted = clear if clear.size else np.array([default])
            choice = int(trusted[np.argmin(scored[trusted])])
            if choice != int(allowed[np.argmin(robust[allowed])]):
                self.exploratory_decisions += 1  # the draw, not the mean model, chose this arm
            self.load_checks.expect((st.rate_per_s if rate is None else rate) * float(
                mean.wait_s[choice] + mean.service_fixed_s[choice] + mean.service_prompt_s[choice] * mean.mean_prompt
                + mean.service_output_s[choice] * mean.mean_output))
        self._chores = self._chore_list()
        self._in_force_index = choice
        self.pulls[choice] += 1
        in_force = self._in_force
        self.load_checks.decided(self._snapshot, choice, None if in_force is None else
                                 float(in_force[0].capacity_per_s[choice]) / in_force[2])
        return choice

    def _note_service_window(self, mean: Projection) -> None:
        top = self._default_index  # the default arm's mean service time
        service = float(mean.service_fixed_s[top] + mean.service_prompt_s[top] * mean.mean_prompt
                        + mean.service_output_s[top] * mean.mean_output)
        if math.isfinite(service) and service > 0.0:
            self._service_window_s = service

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        """Request-level costs are not used (outcomes arrive through ``observe_outcome``)."""
        return None

    def estimates(self) -> list[ArmEstimate]:
        """Projected cost per arm at the posterior mean (last decision) and its draw spread."""
        mean, spread2, pulls = self._cost_mean, self._spread2, self.pulls
        return [ArmEstimate(a, None, float(pulls[a]), float(mean[a]), float(math.sqrt(spread2[a])))
                for a in range(len(self.arms)) if not math.isnan(mean[a])]

    def model_readout(self) -> ModelReadout:
        """Corrections in force, model errors and learning counts (read by the metrics)."""
        energy, service = self.correction.factors()
        clocks = self.board.clock_corrections()
        e_err, s_err = self.correction.mean_abs_error()
        return ModelReadout(
            corrections={"energy": energy, "service": service, "wait": self.correction.wait_factor(WAIT_FLOOR_S),
                         "capacity": self.correction.capacity_factor(), "load": self.load_checks.occupancy,
                         "shares": self.correction.share_factor()},
            clock_corrections=tuple((float(f), float(clocks[0, i]), float(clocks[1, i]))
                                    for i, f in enumerate(self.board.clocks_hz)),
            errors={"energy": e_err, "service": s_err},
            iterations={"time": float(self.board.iterations), "energy": float(self.board.energy_iterations)},
            exploratory_decisions=self.exploratory_decisions,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "model-based", "num_arms": len(self.arms), "board": self.board.state_dict(),
                "workload": self.workload.state_dict(), "correction": self.correction.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state after checking every value: a bad one raises
        :class:`~camel_vllm.policies.state_values.BadStateValue` naming its field
        (``workload.prompts[0] = -5 must be >= 0``) and leaves the policy as it was. The board
        model is also solved once: statistics within every bound that still cannot be solved
        are refused here rather than at the first decision."""
        if state.get("kind") != "model-based":
            raise ValueError(f"state kind {state.get('kind')!r} is not model-based")
        if count(state, "num_arms") != len(self.arms):
            raise BadStateValue("num_arms", f"= {state['num_arms']} but the policy has {len(self.arms)} arms")
        board, workload, correction = copy.deepcopy((self.board, self.workload, self.correction))
        with under("board"):
            board.load_state_dict(item(state, "board"))
        with under("workload"):
            workload.load_state_dict(item(state, "workload"))
        with under("correction"):
            correction.load_state_dict(item(state, "correction"))
        try:
            with np.errstate(all="ignore"):
                coef = board.coefficients(board.clocks_hz)
            solved = bool(np.isfinite(coef.time_s).all() and np.isfinite(coef.energy_j).all())
        except (ValueError, ArithmeticError) as err:  # numpy's LinAlgError is a ValueError
            raise BadStateValue("board", f"cannot be solved ({type(err).__name__}: {err})") from None
        if not solved:
            raise BadStateValue("board", "gives clock coefficients that are not finite")
        self.board, self.correction = board, correction
        self.workload.load_state_dict(state["workload"])  # in place: the controller feeds this one
        self._chores = self._chore_list()  # bound to the board now in force

    # --------------------------------------------------------------- internals
    def _model_ready(self) -> bool:
        return (self.board.iterations >= self.params.warmup_iterations and self.board.ready
                and self.workload.finished >= self.params.warmup_requests)

    def _factors(self) -> tuple[float, float, float]:
        """The outcome corrections in force: (energy, service, wait) factors. A measured
        capacity below the projection stretches service times alike (capacity = B / service)."""
        energy, service = self.correction.factors()
        return energy, service / self.correction.capacity_factor(), self.correction.wait_factor(floor_s=WAIT_FLOOR_S)

    def _slo_allowed(self, proj: Projection, idx: np.ndarray) -> np.ndarray:
        """Available arms whose projected SLO metric (posterior mean, mean request) meets the
        threshold (never none)."""
        assert self.slo is not None
        metric = self.slo.metric
        if metric == "tpot":
            value = proj.service_output_s
        elif metric == "ttft":
            value = (proj.wait_s + proj.service_fixed_s + proj.service_output_s
                     + proj.service_prompt_s * proj.mean_prompt)
        else:
            value = proj.latency_s
        return slo_allowed(idx, value, self.slo.threshold_s)

    def _default(self, idx: np.ndarray) -> int:
        return int(max(idx, key=lambda i: (self._arm_freq[i], self._caps[i])))


# ------------------------------------------------------------------ declaration
def _build(inputs: BuildInputs) -> Policy:
    """``camel``, optionally started from the emulator profile's board (``board_prior: profile``)."""
    config, params = inputs.config, inputs.params
    policy = ModelBasedPolicy(
        inputs.arms, inputs.rng, switch_cost=config.switch_cost, slo=config.slo, token_budget=inputs.token_budget,
        switch_latency_s=inputs.switch_latency_s,
        params=ModelParams(warmup_iterations=params["warmup_iterations"], warmup_requests=params["warmup_requests"],
                           probe=params["probe"]),
    )
    if params["board_prior"] == "profile":
        from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile
        from camel_vllm.devices.emulator.roofline import PerformanceModel
        from camel_vllm.policies.model_based.profile_prior import profile_prior

        model = PerformanceModel(load_device_profile(config.device_profile), load_model_profile(config.model_profile))
        policy.board.set_prior(*profile_prior(model, [a.freq_hz for a in inputs.arms.arms], policy.board.knots))
    return policy


def _prefill_clocks(params: Mapping[str, Any], clocks_hz: Sequence[float]) -> list[float]:
    """``prefill_clock: top``: arms whose prefill steps run at the top clock (the clock follows the work)."""
    return [max(clocks_hz)] if params.get("prefill_clock", "top") == "top" else []


DECLARATION = PolicyDeclaration(
    "camel", "model-based: learns the board per iteration, projects the queue, Thompson draw (the default)", _build,
    params=(
        Param("warmup_iterations", WARMUP_ITERATIONS, integer(minimum=0), "iterations before the first model decision"),
        Param("warmup_requests", MIN_FINISHED, integer(minimum=1), "finished requests before the first model decision"),
        Param("board_prior", "none", choice("none", "profile", quoted=True),
              "profile: start the board model from device_profile / model_profile"),
        Param("prefill_clock", "top", choice("top", "same"),
              "top: arms whose prefill steps run at the top clock; same: every step at the arm's clock"),
        Param("probe", True, flag, "a few decode steps at clocks the board model has not seen, while nobody waits"),
    ),
    # decide again as soon as the requests in the engine double; the epoch's refreshes are
    # spread over maintain() calls (one chore each)
    cadence=Cadence(epoch_s=DEFAULT_EPOCH_S, decide_on_demand_growth=True, maintain_each_iteration=True,
                    chooses_step_clock=True),
    prefill_clocks=_prefill_clocks, listing=0,
)
