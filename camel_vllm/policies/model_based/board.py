"""What camel learns of the board: iteration time and energy as functions of clock and work.

Every engine iteration reports its duration (s) and energy (J) at a known clock ``f`` and a
known amount of work: ``T`` tokens (prefill chunk tokens plus one per decoding request),
``D`` decoding requests and ``C`` context tokens read by attention. Two Bayesian linear
regressions (:class:`~camel_vllm.policies.model_based.blr.BayesLinReg`) learn, from those
many, low-noise observations that carry no queue history::

    time(f, work)   = sum_j w_j(work) * (a_j + b_j (s - 1) + c_j (s - 1)^2),   s = f_max / f
    energy(f, work) = sum_j w_j(work) * (d_j + e_j (s - 1) + g_j (1 - r) + h_j (1 - r)^2),  r = f / f_max

with work terms ``w = [1, min(T, 32), T in 32..128, max(0, T - 128), C]`` (scaled to O(1)):
a fixed cost per step and a piecewise-linear cost of tokens. The frequency bases are
roofline-shaped: a memory-bound part that does not depend on the clock
(``a``), a compute-bound part that grows with cycles / f (``b``), and the curvature of the
effective bandwidth (``c``); energy is static power x time plus dynamic energy growing
with V(f)^2 (``g``, ``h``). The token segments carry the roofline's ridge: a short prefill
chunk rides on the weight reads a decode step pays anyway, a long one is compute bound;
segments (not hinges) keep the terms apart, so each slope is learned from its own steps.
Fitted on the emulated AGX Orin (Llama-3.2-1B, Qwen-2.5-3B; docs/policies.md) the forms leave
~1 % error on decode steps and ~5 % on mixed prefill steps.

Rows are scaled by 1/y (relative errors: a 20 ms decode step and a 1 s prefill weigh
alike). Cold, the prior says nothing about magnitudes, and about the clock it says what the
roofline does: with ``a`` learned at one clock, half of the time scales with 1/f
(``b ~ N(a/2, (a/4)^2)``) and energy falls with the clock (``g ~ N(-d/2, (d/4)^2)``). The prior is rebuilt from
the current fit whenever the posterior is refreshed, so data at other clocks soon
outweighs it. ``forget`` gives an effective memory of 1 / (1 - factor) iterations.

A board may behave unlike either form at some clock. Each clock's last RESIDUAL_WINDOW
iterations are set against the model as it is now whenever it is prepared (log of measured
over predicted), and the mean misfit multiplies that clock's coefficients
(:meth:`BoardModel.clock_corrections`): outcomes at the iteration level, free of queueing.
Against the model now, not as it stood when the iteration came: a model refitted to the clock
played most drifts at the others, and a clock not played since would keep a stale check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.core.arms import same_frequency
from camel_vllm.core.events import IterationWork
from camel_vllm.policies.model_based.blr import BayesLinReg
from camel_vllm.policies.state_values import BadStateValue, array, count, item, number, under

#: Work-term scales: tokens per iteration (prefill chunks are up to a few thousand) and
#: context tokens read (up to ~1e5).
TOKEN_SCALE = 1000.0
CONTEXT_SCALE = 10_000.0
#: Knots of the piecewise-linear cost of tokens per iteration: up to 32 tokens (decode
#: batches), 32-128, above 128 (prefill chunks). The roofline's ridge of 1-3B models on
#: Orin-class GPUs lies between them: weights read once per step vs 2 x params FLOPs per token.
SEGMENT_TOKENS = (32.0, 128.0)


def segment_knots(max_batch: int) -> tuple[float, float]:
    """The knots for an engine whose decode batches reach ``max_batch`` requests: the first
    segment holds every decode batch (at least SEGMENT_TOKENS[0]), the second runs to four
    times that. An Orin's 28 sequences keep (32, 128); an H100's 256 give (256, 1024), so its
    decode steps (memory-bound) do not share a slope with long prefill chunks (compute-bound)."""
    lo = max(SEGMENT_TOKENS[0], float(max_batch))
    return lo, lo * SEGMENT_TOKENS[1] / SEGMENT_TOKENS[0]
NUM_WORK_TERMS = 5
#: Work terms a decode step uses (the fixed cost, the first token segment, context) and those
#: only longer prefill chunks reach (the upper segments): each group gets its own per-clock
#: correction. TERM_GROUP maps each term to its group (0, 1).
DECODE_TERMS = [0, 1, 4]
PREFILL_TERMS = [2, 3]
TERM_GROUP = np.array([0, 0, 1, 1, 0])
TIME_BASIS = 3
ENERGY_BASIS = 4
#: Cold prior on the clock dependence (fractions of the coefficient at the top clock): half
#: of the time scales with 1/f (memory- and compute-bound halves), and energy falls with the
#: clock to half at zero clock (power falls faster than time grows: E(r) / E(1) = 1 - (1 - r) / 2,
#: e.g. 0.66 at a third of the top clock; the emulated Orin gives 0.64).
TIME_SLOPE_MEAN = 0.5
TIME_SLOPE_SD = 0.25
TIME_CURVE_SD = 0.1
ENERGY_MEANS = (0.0, -0.5, 0.0)
ENERGY_SDS = (0.1, 0.25, 0.25)
#: Pessimism of the time model a decision uses (posterior standard deviations).
TIME_PESSIMISM = 2.0
#: Energy a draw may give a clock, at least, as a share of the top clock's: the static power
#: alone (~13 % of the GPU rail under load on AGX Orin: 5.2 W quiet of 40.4 W, from the
#: orin-agx-32gb profile's sources, docs/devices.md) over a step at least as long as the top clock's.
ENERGY_FLOOR_SHARE = 0.1
#: Largest factor a draw or the pessimism may apply to a clock's mean.
DRAW_MAX = 3.0
#: The reference step for the pessimism and the floor: 8 requests decoding 1,000 tokens each.
REFERENCE_DECODES = 8.0
REFERENCE_CONTEXT = 1000.0
#: Prior sd of the top-clock coefficients, in multiples of the largest observed target.
LEVEL_SD = 10.0
#: Forgetting per iteration: an effective memory of 10,000 iterations (minutes of serving).
FORGET_PER_ITERATION = 0.9999
#: Iterations buffered at most before they are folded into the regressions (one matrix
#: product); the policy folds between decisions, so this bounds only a policy that never does.
MAX_BUFFERED = 2048
#: Per-clock misfit: the last RESIDUAL_WINDOW iterations at each clock are kept and, whenever the
#: posterior is prepared, set against the model as it is now; the mean log ratio, shrunk towards
#: none by RESIDUAL_SHRINK pseudo-iterations and bounded by CLOCK_FACTOR_MAX, scales the clock.
RESIDUAL_WINDOW = 128
RESIDUAL_SHRINK = 16.0
CLOCK_FACTOR_MAX = 2.0


def work_terms(prefill_tokens: float, decode_requests: float, context_tokens: float,
               knots: tuple[float, float] = SEGMENT_TOKENS) -> list[float]:
    """The five work terms of one iteration (see the module docstring; ``knots``: the segments')."""
    tokens = prefill_tokens + decode_requests
    lo, hi = knots
    return [
        1.0,
        min(tokens, lo) / TOKEN_SCALE,
        min(max(tokens - lo, 0.0), hi - lo) / TOKEN_SCALE,
        max(tokens - hi, 0.0) / TOKEN_SCALE,
        context_tokens / CONTEXT_SCALE,
    ]


def time_basis(freq_hz: np.ndarray, max_freq_hz: float) -> np.ndarray:
    """(n, 3) clock basis of the time model: [1, s - 1, (s - 1)^2]."""
    s1 = max_freq_hz / np.asarray(freq_hz, dtype=float) - 1.0
    return np.stack([np.ones_like(s1), s1, s1 * s1], axis=-1)


def energy_basis(freq_hz: np.ndarray, max_freq_hz: float) -> np.ndarray:
    """(n, 4) clock basis of the energy model: [1, s - 1, 1 - r, (1 - r)^2]."""
    r = np.asarray(freq_hz, dtype=float) / max_freq_hz
    return np.stack([np.ones_like(r), 1.0 / r - 1.0, 1.0 - r, (1.0 - r) ** 2], axis=-1)


@dataclass(frozen=True)
class _Prepared:
    """What :meth:`BoardModel.prepare` solved for the decisions until the next fold."""

    mean: "ClockCoefficients"
    slow_time: np.ndarray
    x_energy: np.ndarray
    inv_mean_energy: np.ndarray
    low: np.ndarray


@dataclass(frozen=True)
class ClockCoefficients:
    """Per-clock coefficients of the work terms, one row per frequency in ``freqs_hz``.

    ``time_s[i, j]`` is seconds per unit of work term j at ``freqs_hz[i]``; ``energy_j`` the
    same in joules.
    """

    freqs_hz: np.ndarray
    time_s: np.ndarray
    energy_j: np.ndarray


class BoardModel:
    """Online time and energy models of one board (see the module docstring)."""

    def __init__(self, freqs_hz: Sequence[float | None], *, forget_per_iteration: float = FORGET_PER_ITERATION,
                 knots: tuple[float, float] = SEGMENT_TOKENS) -> None:
        known = [float(f) for f in freqs_hz if f is not None]
        #: The token segments' knots (:func:`segment_knots`).
        self.knots = (float(knots[0]), float(knots[1]))
        self.max_freq_hz = max(known) if known else 1.0
        self.forget_per_iteration = float(forget_per_iteration)
        self.time = BayesLinReg(NUM_WORK_TERMS * TIME_BASIS)
        self.energy = BayesLinReg(NUM_WORK_TERMS * ENERGY_BASIS)
        self.iterations = 0
        self.energy_iterations = 0
        self.frequencies_seen: set[float] = set()
        #: Iterations not folded yet, one row each: clock (Hz), the work terms, duration (s),
        #: energy (J; NaN where the sensor gave none).
        self._buffer: list[list[float]] = []
        #: Staged iterations not in the time regression yet: (design rows, durations)
        self._time_pending: list[tuple[np.ndarray, np.ndarray]] = []
        #: Staged iterations not in the energy regression yet: (count, freqs, terms, J, clock rows)
        self._energy_pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._time_scale = 0.0
        self._energy_scale = 0.0
        self._prior_from_profile = False
        #: Whether each prior (time, energy) needs rebuilding around data folded since.
        self._stale = [False, False]
        self._prepared: _Prepared | None = None
        #: For :meth:`cautious_step_s`, made from the posterior of the ``_Prepared`` it holds:
        #: per clock, the time per work term at the posterior mean before corrections (C, 5) and
        #: the covariance of how each work term's time moves with the clock (C, 5, 5).
        self._cautious: tuple[_Prepared, np.ndarray, np.ndarray] | None = None
        #: Whether the per-clock corrections are current (the windows and the posteriors unchanged since).
        self._corrected = False
        self._clock_list = np.array(sorted({float(f) for f in freqs_hz if f is not None} or {self.max_freq_hz}))
        ref = np.tile(np.array(work_terms(0.0, REFERENCE_DECODES, REFERENCE_DECODES * REFERENCE_CONTEXT, self.knots)),
                      (len(self._clock_list), 1))
        #: The reference step at every clock, as rows of the time and energy designs.
        self._reference = (_design(ref, time_basis(self._clock_list, self.max_freq_hz)),
                           _design(ref, energy_basis(self._clock_list, self.max_freq_hz)))
        n_clocks = len(self._clock_list)
        #: Each clock's last RESIDUAL_WINDOW iterations: work terms, (duration, energy) (energy
        #: NaN where not measured), how many are held and where the next goes (a ring).
        self._window_terms = np.zeros((n_clocks, RESIDUAL_WINDOW, NUM_WORK_TERMS))
        self._window_y = np.full((n_clocks, RESIDUAL_WINDOW, 2), np.nan)
        self._window_count = np.zeros(n_clocks, dtype=np.intp)
        self._window_next = np.zeros(n_clocks, dtype=np.intp)
        self._window_basis = (time_basis(self._clock_list, self.max_freq_hz),
                              energy_basis(self._clock_list, self.max_freq_hz))
        #: (time/energy, clock, decode/prefill term group) factors from the last :meth:`prepare`.
        self._factors = np.ones((2, n_clocks, 2))

    # ------------------------------------------------------------------ data
    def observe(self, freq_hz: float | None, work: IterationWork, duration_s: float, energy_j: float | None) -> None:
        """Record one iteration (cheap: buffered until :meth:`fold`, which the policy calls
        between decisions; at most MAX_BUFFERED wait)."""
        if not duration_s > 0.0 or duration_s != duration_s:
            return
        f = self.max_freq_hz if freq_hz is None else float(freq_hz)
        terms = work_terms(work.num_prefill_tokens, work.num_decode_tokens, work.context_tokens, self.knots)
        if energy_j is not None and not energy_j > 0.0:
            energy_j = None  # a sensor that read nothing teaches nothing
        self._buffer.append([f, *terms, duration_s, math.nan if energy_j is None else energy_j])
        if len(self._buffer) >= MAX_BUFFERED:
            self.fold()

    def fold(self) -> None:
        """Fold the buffered iterations into the regressions (one product per model)."""
        self.stage()
        self.fold_time()
        self.fold_energy()

    def stage(self) -> None:
        """The first of :meth:`fold`'s three steps (each is one chore between decisions): the
        buffered iterations as design rows, checked against the models as they are."""
        if not self._buffer:
            return
        rows = np.array(self._buffer)
        self._buffer = []
        freqs, terms, dur, energy = rows[:, 0], rows[:, 1:1 + NUM_WORK_TERMS], rows[:, -2], rows[:, -1]
        x_t = _design(terms, time_basis(freqs, self.max_freq_hz))
        clock = np.searchsorted(self._clock_list, freqs)
        self._remember(clock, terms, dur, energy)
        self._corrected = False
        has_e = energy == energy  # not NaN
        self._time_pending.append((x_t, dur))
        self._energy_pending.append((len(rows), freqs[has_e], terms[has_e], energy[has_e], clock[has_e]))
        self.iterations += len(rows)
        self.frequencies_seen.update(float(f) for f in np.unique(freqs))

    def fold_time(self) -> None:
        """The staged iterations into the time regression."""
        pending = self._time_pending
        self._time_pending = []
        for x_t, dur in pending:
            self.time.forget(self.forget_per_iteration ** len(dur))
            self.time.add(x_t / dur[:, None], np.ones_like(dur))
            self._time_scale = max(self._time_scale, float(dur.max()))
            self._stale[0] = True
            self._prepared = None
            self._corrected = False

    def fold_energy(self) -> None:
        """The last step of :meth:`fold`: the staged iterations' energy into the energy regression."""
        pending = self._energy_pending
        self._energy_pending = []
        for staged, freqs, terms, en, _clock in pending:
            x_e = _design(terms, energy_basis(freqs, self.max_freq_hz)) if en.size else None
            self.energy.forget(self.forget_per_iteration ** staged)
            if x_e is not None:
                self.energy.add(x_e / en[:, None], np.ones_like(en))
                self._energy_scale = max(self._energy_scale, float(en.max()))
                self.energy_iterations += int(en.size)
            self._stale[1] = True
            self._prepared = None
            self._corrected = False

    def _remember(self, clock: np.ndarray, terms: np.ndarray, dur: np.ndarray, energy: np.ndarray) -> None:
        """Keep the newest RESIDUAL_WINDOW iterations of each clock (ring buffers)."""
        n_clocks = len(self._clock_list)
        clock = np.clip(clock, 0, n_clocks - 1)
        for c in np.unique(clock):
            rows = np.flatnonzero(clock == c)[-RESIDUAL_WINDOW:]
            slots = (self._window_next[c] + np.arange(rows.size)) % RESIDUAL_WINDOW
            self._window_terms[c, slots] = terms[rows]
            self._window_y[c, slots, 0] = dur[rows]
            self._window_y[c, slots, 1] = energy[rows]
            self._window_next[c] = (self._window_next[c] + rows.size) % RESIDUAL_WINDOW
            self._window_count[c] = min(RESIDUAL_WINDOW, self._window_count[c] + rows.size)

    def _refresh_corrections(self) -> None:
        """Each clock's misfit over its window against the posterior mean now (uncorrected):
        measured = a x (the model's step-and-decode part) + b x (its prefill part), fitted in
        relative error per clock with RESIDUAL_SHRINK pseudo-iterations at a = b = 1. Two
        factors, not one: a clock whose window holds mostly prefill steps must not rescale its
        decode steps by their misfit (the term groups: :data:`DECODE_TERMS`, :data:`PREFILL_TERMS`)."""
        filled = np.arange(RESIDUAL_WINDOW)[None, :] < self._window_count[:, None]  # (C, W)
        for k, (reg, basis, nb) in enumerate(((self.time, self._window_basis[0], TIME_BASIS),
                                              (self.energy, self._window_basis[1], ENERGY_BASIS))):
            if reg.weight <= 0.0:
                continue
            per_clock = basis @ reg.mean.reshape(NUM_WORK_TERMS, nb).T  # (C, 5)
            parts = self._window_terms * per_clock[:, None, :]  # (C, W, 5)
            y = self._window_y[:, :, k]
            ok = filled & (y > 0.0)
            safe_y = np.where(ok, y, 1.0)
            p = np.where(ok, parts[:, :, DECODE_TERMS].sum(axis=2) / safe_y, 0.0)
            q = np.where(ok, parts[:, :, PREFILL_TERMS].sum(axis=2) / safe_y, 0.0)
            s = RESIDUAL_SHRINK
            spp, sqq, spq = (p * p).sum(axis=1) + s, (q * q).sum(axis=1) + s, (p * q).sum(axis=1)
            rp, rq = p.sum(axis=1) + s, q.sum(axis=1) + s
            det = spp * sqq - spq * spq
            self._factors[k, :, 0] = (rp * sqq - rq * spq) / det
            self._factors[k, :, 1] = (rq * spp - rp * spq) / det
        np.clip(self._factors, 1.0 / CLOCK_FACTOR_MAX, CLOCK_FACTOR_MAX, out=self._factors)

    def clock_corrections(self) -> np.ndarray:
        """(2, clocks) multiplicative corrections of time and energy per clock (ascending) of
        the step-and-decode terms (what a decode step sees; prefill terms have their own,
        :meth:`_refresh_corrections`), bounded to [1 / CLOCK_FACTOR_MAX, CLOCK_FACTOR_MAX]."""
        return self._factors[:, :, 0].copy()

    def refresh_prior(self) -> None:
        """Rebuild the cold priors around the current fit where data came in since (module
        docstring); a profile-built prior (:meth:`set_prior`) is kept as it is. Called lazily,
        before coefficients are read."""
        self._refresh_prior(0)
        self._refresh_prior(1)

    def _refresh_prior(self, k: int) -> None:
        if not self._stale[k]:
            return
        self._stale[k] = False
        if self._prior_from_profile:
            return
        if k == 0:
            self.time.set_prior(*_relative_prior(self.time, TIME_BASIS, self._time_scale,
                                                 (TIME_SLOPE_MEAN, 0.0), (TIME_SLOPE_SD, TIME_CURVE_SD)))
        elif self._energy_scale > 0.0:
            self.energy.set_prior(*_relative_prior(self.energy, ENERGY_BASIS, self._energy_scale,
                                                   ENERGY_MEANS, ENERGY_SDS))

    def solve_time(self) -> None:
        """A chore before :meth:`prepare`: the time prior rebuilt and its posterior solved."""
        self._refresh_prior(0)
        self.time.posterior()

    def solve_energy(self) -> None:
        """A chore before :meth:`prepare`: the energy prior rebuilt and its posterior solved."""
        self._refresh_prior(1)
        self.energy.posterior()

    def set_prior(self, time_mean: np.ndarray, time_var: np.ndarray, energy_mean: np.ndarray,
                  energy_var: np.ndarray) -> None:
        """Start from a prior built elsewhere (a measured profile, another board's state)."""
        self.time.set_prior(time_mean, time_var)
        self.energy.set_prior(energy_mean, energy_var)
        self._prior_from_profile = True
        self._prepared = None
        self._corrected = False

    @property
    def clocks_hz(self) -> np.ndarray:
        """The board's clocks (Hz, ascending): the rows of coefficients and corrections."""
        return self._clock_list

    @property
    def ready(self) -> bool:
        """Whether both models have data (energy may lag when the sensor is slow)."""
        return self.time.weight > 0.0 and self.energy.weight > 0.0

    # ------------------------------------------------------------- coefficients
    def coefficients(self, freqs_hz: np.ndarray, rng: np.random.Generator | None = None, *,
                     corrected: bool = True) -> ClockCoefficients:
        """Per-clock coefficients at the posterior mean, or at one posterior draw (``rng``),
        times the per-clock corrections unless ``corrected`` is False."""
        freqs_hz = np.asarray(freqs_hz, dtype=float)
        self.refresh_prior()
        theta_t = self.time.mean if rng is None else self.time.sample(rng)
        theta_e = self.energy.mean if rng is None else self.energy.sample(rng)
        t = time_basis(freqs_hz, self.max_freq_hz) @ theta_t.reshape(NUM_WORK_TERMS, TIME_BASIS).T
        e = energy_basis(freqs_hz, self.max_freq_hz) @ theta_e.reshape(NUM_WORK_TERMS, ENERGY_BASIS).T
        if corrected:
            rows = np.clip(np.searchsorted(self._clock_list, freqs_hz), 0, len(self._clock_list) - 1)
            factors = self._factors[:, rows][:, :, TERM_GROUP]  # (2, n, 5)
            t = t * factors[0]
            e = e * factors[1]
        return ClockCoefficients(freqs_hz, t, e)

    def refresh_corrections(self) -> None:
        """The first part of :meth:`prepare` (a chore of its own): the priors and posteriors,
        and each clock's misfit against them (:meth:`clock_corrections`)."""
        self.refresh_prior()
        if not self._corrected:
            self._refresh_corrections()
            self._corrected = True

    def prepare(self) -> None:
        """Solve what the next decisions read, so that a decision itself only draws: the
        prior, both posteriors, the per-clock corrections (unless :meth:`refresh_corrections`
        made them since the last change), the mean coefficients at the board's clocks, each
        clock's time pessimism and energy floor (see :meth:`explore`)."""
        self.refresh_corrections()
        mean = self.coefficients(self._clock_list)
        x_t, x_e = self._reference
        mean_t = np.maximum(x_t @ self.time.mean, 1e-12)
        sd_t = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", x_t, self.time.covariance(), x_t), 0.0))
        slow = np.minimum(1.0 + TIME_PESSIMISM * sd_t / mean_t, DRAW_MAX)
        mean_e = np.maximum(x_e @ self.energy.mean, 1e-12)
        low = np.minimum(ENERGY_FLOOR_SHARE * float(mean_e[-1]) / mean_e, 1.0)
        self._prepared = _Prepared(mean, mean.time_s * slow[:, None], x_e, 1.0 / mean_e, low)

    def mean_coefficients(self) -> ClockCoefficients:
        """Posterior-mean coefficients (corrected) at the board's clocks, ascending."""
        if self._prepared is None:
            self.prepare()
        assert self._prepared is not None
        return self._prepared.mean

    def cautious_step_s(self, freq_hz: float, terms: Sequence[float]) -> float:
        """Duration (s) of a step with these work terms (:func:`work_terms`) at ``freq_hz`` (the
        nearest of the board's clocks at or above it): the posterior mean's (corrected), scaled
        by 1 + TIME_PESSIMISM posterior standard deviations of how this step's time moves with
        the clock (the basis terms beyond the top-clock level; relative, at most DRAW_MAX x).
        With data at one clock only, the prior then makes the whole time scale with 1/f below
        it: a clock whose speed is not known is taken to be slow where its speed matters, and
        the top clock, measured, is taken as measured. What an SLO check reads: no draw."""
        mean = self.mean_coefficients()
        prepared = self._prepared
        assert prepared is not None
        if self._cautious is None or self._cautious[0] is not prepared:  # once per posterior
            basis = time_basis(self._clock_list, self.max_freq_hz)  # (C, B)
            raw = basis @ self.time.mean.reshape(NUM_WORK_TERMS, TIME_BASIS).T
            moving = basis.copy()
            moving[:, 0] = 0.0  # the level: what the top clock measures
            cov = self.time.covariance().reshape(NUM_WORK_TERMS, TIME_BASIS, NUM_WORK_TERMS, TIME_BASIS)
            self._cautious = (prepared, raw, np.einsum("cb,ibjd,cd->cij", moving, cov, moving))
        _, raw, moves = self._cautious
        row = min(int(np.searchsorted(self._clock_list, freq_hz * (1.0 - 1e-9))), len(self._clock_list) - 1)
        w = np.asarray(terms, dtype=float)
        sd = math.sqrt(max(float(w @ moves[row] @ w), 0.0))
        return float(mean.time_s[row] @ w) * min(1.0 + TIME_PESSIMISM * sd / max(float(raw[row] @ w), 1e-12),
                                                  DRAW_MAX)

    def explore(self, rng: np.random.Generator) -> ClockCoefficients:
        """The coefficients one decision plays with, at the board's clocks: the posterior
        mean's, scaled per clock.

        Energy by a Thompson draw (clocks whose energy is uncertain get tried): the ratio of
        one posterior draw to the mean on a reference step (REFERENCE_DECODES requests
        decoding), kept within [ENERGY_FLOOR_SHARE of the top clock's energy, DRAW_MAX x the
        mean] (a draw that made energy vanish would make any queue look free). Time
        pessimistically: the mean plus TIME_PESSIMISM posterior standard deviations on the
        reference step (at most DRAW_MAX x), so a clock whose speed is unknown is taken to be
        slow and is tried where there is slack, never under a load only the fastest arms carry.
        """
        if self._prepared is None:
            self.prepare()
        prep = self._prepared
        assert prep is not None
        ratio = np.minimum(np.maximum(prep.x_energy @ self.energy.sample(rng) * prep.inv_mean_energy, prep.low),
                           DRAW_MAX)
        return ClockCoefficients(prep.mean.freqs_hz, prep.slow_time, prep.mean.energy_j * ratio[:, None])

    def predict(self, freq_hz: float, work: IterationWork) -> tuple[float, float]:
        """(time_s, energy_j) of one iteration at the posterior mean."""
        coef = self.coefficients(np.array([freq_hz]))
        terms = np.array(work_terms(work.num_prefill_tokens, work.num_decode_tokens, work.context_tokens, self.knots))
        return float(coef.time_s[0] @ terms), float(coef.energy_j[0] @ terms)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        self.fold()
        return {
            "max_freq_hz": self.max_freq_hz,
            "time": self.time.state_dict(),
            "energy": self.energy.state_dict(),
            "iterations": self.iterations,
            "energy_iterations": self.energy_iterations,
            "time_scale": self._time_scale,
            "energy_scale": self._energy_scale,
            "frequencies_seen": sorted(self.frequencies_seen),
            "knots": list(self.knots),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state after checking every value (:mod:`~camel_vllm.policies.state_values`: a
        failure names the field, e.g. ``time.xty[0]``, and changes nothing)."""
        top_hz = number(state, "max_freq_hz", high=1e12)
        if not same_frequency(top_hz, self.max_freq_hz):
            raise BadStateValue("max_freq_hz", f"= {top_hz:g} is another top clock than this board's "
                                               f"{self.max_freq_hz:g} Hz")
        knots = tuple(float(k) for k in state.get("knots", SEGMENT_TOKENS))  # states before knots: the fixed ones
        if knots != self.knots:
            raise BadStateValue("knots", f"= {list(knots)} are another engine's token segments than this one's "
                                         f"{list(self.knots)} (its --max-num-seqs differs)")
        with under("time"):  # checked on a scratch model: this one keeps its prior
            BayesLinReg(self.time.dim).load_state_dict(item(state, "time"))
        with under("energy"):
            BayesLinReg(self.energy.dim).load_state_dict(item(state, "energy"))
        iterations = count(state, "iterations", default=0)
        energy_iterations = count(state, "energy_iterations", default=0)
        if energy_iterations > iterations:
            raise BadStateValue("energy_iterations", f"= {energy_iterations} must be <= iterations ({iterations})")
        time_scale = number(state, "time_scale", default=0.0)
        energy_scale = number(state, "energy_scale", default=0.0)
        seen = item(state, "frequencies_seen", [])
        seen = array(seen, "frequencies_seen", (len(seen) if isinstance(seen, list) else 0,), low=0.0, high=1e12)
        self.time.load_state_dict(state["time"])  # checked above: both load now
        self.energy.load_state_dict(state["energy"])
        self.iterations, self.energy_iterations = iterations, energy_iterations
        self._time_scale, self._energy_scale = time_scale, energy_scale
        self.frequencies_seen = {float(f) for f in seen}
        self._stale = [True, True]
        self._prepared = None
        self._corrected = False


def _design(terms: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Rows of work terms (k, 6) times clock basis (k, B) -> design matrix (k, 6 * B)."""
    return (terms[:, :, None] * basis[:, None, :]).reshape(terms.shape[0], -1)


def _relative_prior(model: BayesLinReg, num_basis: int, scale: float, slope_means: Sequence[float],
                    slope_sds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Prior: top-clock coefficients broad (LEVEL_SD x the data's scale); the clock terms of
    work term j centred at ``slope_means`` x its top-clock coefficient, sd ``slope_sds`` x it."""
    level_sd = LEVEL_SD * max(scale, 1e-6)
    mean = np.zeros((NUM_WORK_TERMS, num_basis))
    sd = np.full((NUM_WORK_TERMS, num_basis), level_sd)
    if model.weight > 0.0:
        # The top-clock level per work term: from the last posterior (a fixed point that the
        # rebuilds converge to), or the first time from a fit under a flat prior.
        last = model.last_mean
        if last is None:
            model.set_prior(np.zeros(model.dim), np.full(model.dim, level_sd**2))
            last = model.mean
        level = last.reshape(NUM_WORK_TERMS, num_basis)[:, 0]
        floor = 1e-3 * level_sd
        for k in range(1, num_basis):
            mean[:, k] = slope_means[k - 1] * level
            sd[:, k] = slope_sds[k - 1] * np.abs(level) + floor
    else:
        sd[:, 1:] = level_sd
    return mean.reshape(-1), (sd**2).reshape(-1)
