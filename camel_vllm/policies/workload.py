"""What camel knows of the load: arrival rate and burstiness, and the requests' sizes.

Arrivals give the rate ``lambda`` (requests/s: the larger of the arrival counts decayed with
half-lives of ``RATE_HALF_LIFE_S`` and ``RECENT_HALF_LIFE_S``) and the squared coefficient of
variation of the gaps between them, ``ca2`` (1 for Poisson arrivals, more for bursts, over the
last ~``GAP_MEMORY`` gaps). The rate errs towards more load: a rising load is seen within
seconds. Each rate is expected to hold for its half-life (``LoadView.rate_phases``): a burst
for ~``RECENT_HALF_LIFE_S``, then the long-run rate, so the projection prices a burst by the
queue it leaves rather than as a load that never ends.
Arrivals give the moments of prompt tokens ``P`` at once; finished requests those of output
tokens ``L`` and their covariance with ``P``, over the last ~``SIZE_MEMORY`` requests. Together
they make ``E[x x']`` for ``x = (1, P, L)``. Output lengths are unknown in advance, so
projections use what finished requests have shown; the first to finish are the short ones,
so until ``MIN_FINISHED`` have, the conversation-trace median (128 output tokens, CV 1)
stands in.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from camel_vllm.policies.state_values import BadStateValue, array, check_number, count, item, number

#: Arrivals and finished requests the estimates remember (exponential weighting).
GAP_MEMORY = 64
SIZE_MEMORY = 128
#: Half-life of the arrival rate (s): longer than a burst (the Azure code trace's last tens of
#: seconds), so a burst shows as the queue it leaves rather than as a rate that lasts, and
#: short enough to follow a workload that changes over minutes.
RATE_HALF_LIFE_S = 120.0
#: Half-life of the recent rate (s): a load that rises is believed within ~a quarter minute
#: (the larger of the two rates is used: the estimate errs towards more load).
RECENT_HALF_LIFE_S = 15.0
#: Standard errors added to the mean output length (see LoadView, view()).
OUTPUT_UCB_SE = 1.0
#: Finished requests before their sizes replace the cold defaults.
MIN_FINISHED = 32
#: Arrivals kept for the dispersion of counts, the longest history they span (s), and the
#: fewest windows a dispersion is computed from.
DISPERSION_ARRIVALS = 512
DISPERSION_HORIZON_S = 600.0
MIN_DISPERSION_WINDOWS = 8
#: Cold default output length (tokens): the Azure conversation trace's median, 129
#: (../shared/traces/SOURCES.md), with a coefficient of variation of 1.
DEFAULT_OUTPUT_TOKENS = 128.0
DEFAULT_PROMPT_TOKENS = 512.0
#: Finished requests whose output lengths give the residual-life estimate
#: (:meth:`WorkloadEstimator.mean_residual_output`), as a distribution rather than moments.
LENGTH_HISTORY = 2000
#: The most tokens a loaded state may give one request (prompt or output): more than any
#: model's context, so a state that says more is corrupt.
MAX_TOKENS = 1e7


@dataclass(frozen=True)
class LoadView:
    """A snapshot of the load estimates used by one projection.

    ``dispersion`` is the index of dispersion of arrival counts (variance over mean) in
    windows of about a request's service time: 1 for Poisson arrivals, ``2m - 1`` for
    clumps of (geometric) mean size ``m`` arriving at once.
    """

    rate_per_s: float
    ca2: float
    moments: np.ndarray  # E[x x'] for x = (1, P, L), (3, 3)
    mean_chunk_tokens: float  # E[min(P, token budget)]
    mean_chunks: float  # E[ceil(P / token budget)]
    dispersion: float = 1.0
    #: How long arrivals are expected to come, as ``(rate per s, until s from now)`` phases:
    #: each rate estimate for its half-life, the recent one first where it is the larger (a
    #: burst is believed for ~RECENT_HALF_LIFE_S, the long-run rate for ~RATE_HALF_LIFE_S);
    #: none after the last phase. Empty: ``rate_per_s`` for as long as it takes.
    rate_phases: tuple[tuple[float, float], ...] = ()
    #: The engine's token budget per step (``--max-num-batched-tokens``); 0 where the engine
    #: did not say (then no capacity is bounded by it).
    budget_tokens: float = 0.0

    @property
    def rate_horizon_s(self) -> float:
        """How long arrivals are expected to come at all (s; inf without phases)."""
        return self.rate_phases[-1][1] if self.rate_phases else math.inf

    def scaled(self, factor: float) -> "LoadView":
        """The same load with every rate times ``factor``."""
        return dataclasses.replace(self, rate_per_s=self.rate_per_s * factor,
                                   rate_phases=tuple((r * factor, t) for r, t in self.rate_phases))

    @property
    def mean_prompt(self) -> float:
        return float(self.moments[0, 1])

    @property
    def mean_output(self) -> float:
        return float(self.moments[0, 2])

    @property
    def output_cv2(self) -> float:
        mean = self.mean_output
        return max(0.0, float(self.moments[2, 2]) / (mean * mean) - 1.0) if mean > 0 else 1.0

    @property
    def decode_context_tokens(self) -> float:
        """Mean context a decode step reads per request, weighted by steps: E[L P + L^2/2] / E[L]."""
        mean = self.mean_output
        if mean <= 0:
            return self.mean_prompt
        return float(self.moments[1, 2] + 0.5 * self.moments[2, 2]) / mean


class WorkloadEstimator:
    """Exponentially weighted load estimates (see the module docstring)."""

    def __init__(self, token_budget: int | None = None, *, min_finished: int = MIN_FINISHED) -> None:
        self.token_budget = token_budget
        self.min_finished = max(1, int(min_finished))
        self.arrivals = 0
        self.finished = 0
        self._last_arrival_s: float | None = None
        self._gap_mean = 0.0
        self._gap_sq = 0.0
        self._taus = (RATE_HALF_LIFE_S / math.log(2.0), RECENT_HALF_LIFE_S / math.log(2.0))
        self._counts = [0.0, 0.0]
        self._count_t_s: float | None = None
        self._first_arrival_s: float | None = None
        self._gaps = 0
        self._moments = np.zeros((3, 3))  # from finished requests
        self._prompts = 0
        self._p1 = 0.0  # E[P], E[P^2] from arrivals
        self._p2 = 0.0
        self._chunk = 0.0
        self._chunks = 0.0
        self._size_weight = 0.0
        self._max_chunk = 0
        self._running: tuple[int, float, float] = (0, 0.0, 0.0)
        self._arrival_times: deque[float] = deque(maxlen=DISPERSION_ARRIVALS)
        self._dispersion = 1.0
        self._lengths: deque[int] = deque(maxlen=LENGTH_HISTORY)
        #: The remembered lengths sorted and their suffix sums (None: rebuilt at the next read).
        self._residual: tuple[np.ndarray, np.ndarray] | None = None

    def dispersion(self, now_s: float, window_s: float) -> float:
        """Variance over mean of arrival counts in consecutive windows of ``window_s``, over
        the last DISPERSION_ARRIVALS arrivals (1.0 before MIN_DISPERSION_WINDOWS windows)."""
        if window_s <= 0.0 or len(self._arrival_times) < 2:
            return 1.0
        times = np.fromiter(self._arrival_times, dtype=float)
        start = max(float(times[0]), now_s - DISPERSION_HORIZON_S)
        span = now_s - start
        windows = int(span / window_s)
        if windows < MIN_DISPERSION_WINDOWS:
            return 1.0
        counts = np.bincount(((times[times >= start] - start) / window_s).astype(np.intp), minlength=windows)[:windows]
        mean = float(counts.mean())
        return float(counts.var(ddof=1)) / mean if mean > 0 else 1.0

    def observe_arrival(self, now_s: float, prompt_tokens: int | None = None) -> None:
        self._arrival_times.append(now_s)
        self._decay_count(now_s)
        self._counts = [c + 1.0 for c in self._counts]
        if self._first_arrival_s is None:
            self._first_arrival_s = now_s
        if prompt_tokens is not None:
            p = float(max(0, prompt_tokens))
            self._prompts += 1
            a = max(1.0 / SIZE_MEMORY, 1.0 / self._prompts)
            self._p1 += a * (p - self._p1)
            self._p2 += a * (p * p - self._p2)
            budget = self._budget()
            self._chunk += a * (min(p, budget) - self._chunk)
            self._chunks += a * (max(1.0, math.ceil(p / budget)) - self._chunks)
        if self._last_arrival_s is not None:
            gap = max(0.0, now_s - self._last_arrival_s)
            self._gaps += 1
            a = max(1.0 / GAP_MEMORY, 1.0 / self._gaps)
            self._gap_mean += a * (gap - self._gap_mean)
            self._gap_sq += a * (gap * gap - self._gap_sq)

        self._last_arrival_s = now_s if self._last_arrival_s is None else max(self._last_arrival_s, now_s)
        self.arrivals += 1

    def observe_chunk(self, prefill_tokens: int) -> None:
        """The largest prefill seen in one iteration stands for the token budget when the
        engine did not say what it is."""
        if prefill_tokens > self._max_chunk:
            self._max_chunk = prefill_tokens

    def observe_finished(self, prompt_tokens: int, output_tokens: int) -> None:
        self._lengths.append(int(output_tokens))
        self._residual = None
        p, o = float(max(0, prompt_tokens)), float(max(1, output_tokens))
        x = np.array([1.0, p, o])
        self.finished += 1
        a = max(1.0 / SIZE_MEMORY, 1.0 / self.finished)
        self._moments += a * (np.outer(x, x) - self._moments)
        if self._prompts == 0:  # arrivals not reported: prompts from finished requests
            budget = self._budget()
            self._chunk += a * (min(p, budget) - self._chunk)
            self._chunks += a * (max(1.0, math.ceil(p / budget)) - self._chunks)

    def mean_residual_output(self, produced: np.ndarray, default_tokens: float = DEFAULT_OUTPUT_TOKENS) -> np.ndarray:
        """``E[L - k | L > k]`` for each ``k`` in ``produced`` (output tokens so far), over the
        last LENGTH_HISTORY finished requests' output lengths (tokens, at least 1): what a
        running request has still to produce. Before any has finished, ``default_tokens - k``."""
        k = np.asarray(produced)
        if not self._lengths:
            return np.maximum(1.0, default_tokens - k).astype(float)
        if self._residual is None:  # rebuilt at the first read after a new length
            ordered = np.sort(np.fromiter(self._lengths, dtype=np.int64, count=len(self._lengths)))
            self._residual = (ordered, np.concatenate([np.cumsum(ordered[::-1])[::-1], [0.0]]))
        ordered, suffix = self._residual
        start = np.searchsorted(ordered, k, side="right")
        count = len(ordered) - start
        mean = np.where(count > 0, suffix[start] / np.maximum(count, 1) - k, 1.0)
        return np.maximum(1.0, mean)

    def _budget(self) -> float:
        if self.token_budget:
            return float(self.token_budget)
        return float(max(self._max_chunk, 512))

    def rate_per_s(self, now_s: float) -> float:
        """Arrivals per second (0 before two arrivals): the larger of the rate over the last
        ~RATE_HALF_LIFE_S and over the last ~RECENT_HALF_LIFE_S, each the arrival count
        decayed with that half-life over the time it covers."""
        return max(self._rates(now_s))

    def rate_phases(self, now_s: float) -> tuple[tuple[float, float], ...]:
        """:attr:`LoadView.rate_phases`: the long-run rate for RATE_HALF_LIFE_S, after the
        recent one for RECENT_HALF_LIFE_S where that is the larger."""
        long, recent = self._rates(now_s)
        if recent > long:
            return ((recent, RECENT_HALF_LIFE_S), (long, RATE_HALF_LIFE_S))
        return ((long, RATE_HALF_LIFE_S),)

    def _rates(self, now_s: float) -> list[float]:
        """The long-run and the recent rate (0 before two arrivals)."""
        if self._gaps == 0 or self._first_arrival_s is None:
            return [0.0, 0.0]
        self._decay_count(now_s)
        age = now_s - self._first_arrival_s
        rates = []
        for arrivals, tau in zip(self._counts, self._taus, strict=False):
            covered = (1.0 - math.exp(-age / tau)) * tau
            rates.append(arrivals / covered if covered > 0 else 0.0)
        return rates

    def _decay_count(self, now_s: float) -> None:
        if self._count_t_s is not None and now_s > self._count_t_s:
            dt = now_s - self._count_t_s
            self._counts = [c * math.exp(-dt / tau) for c, tau in zip(self._counts, self._taus, strict=False)]
        if self._count_t_s is None or now_s > self._count_t_s:
            self._count_t_s = now_s

    def ca2(self) -> float:
        """Squared coefficient of variation of inter-arrival gaps (1 before enough arrivals)."""
        if self._gaps < 8 or self._gap_mean <= 0:
            return 1.0
        var = max(0.0, self._gap_sq - self._gap_mean**2)
        return var / self._gap_mean**2

    def observe_running(self, count: int, output_tokens: float, output_tokens_sq: float) -> None:
        """The requests running now and their output tokens so far (sum, sum of squares)."""
        self._running = (max(0, count), max(0.0, output_tokens), max(0.0, output_tokens_sq))

    def measure_dispersion(self, now_s: float, window_s: float) -> None:
        """Measure the dispersion of arrivals at the timescale ``window_s`` (a request's service
        time) now; views carry it until the next measurement (a few hundred microseconds of
        numpy, kept off the decisions)."""
        self._dispersion = self.dispersion(now_s, window_s)

    def view(self, now_s: float) -> LoadView:
        """The estimates now (the dispersion as last measured)."""
        if self.finished >= self.min_finished:
            f = self._moments
            l1, l2, cov = f[0, 2], f[2, 2], f[1, 2] - f[0, 1] * f[0, 2]
            # Running requests' outputs so far are lower bounds on their lengths: where they
            # and the finished ones together average more, the finished ones were the short.
            n_run, k1, k2 = self._running
            weight = min(float(self.finished), float(SIZE_MEMORY))
            if n_run:
                l1 = max(l1, (weight * l1 + k1) / (weight + n_run))
                l2 = max(l2, (weight * l2 + k2) / (weight + n_run))
            # Pessimism about what is still being learned: the mean output length at its
            # upper confidence bound (OUTPUT_UCB_SE standard errors), the other moments scaled
            # alike. Longer outputs mean less capacity, so the error errs towards fast arms.
            scale = 1.0 + OUTPUT_UCB_SE * math.sqrt(max(l2 - l1 * l1, 0.0) / weight) / max(l1, 1.0)
            l1, l2, cov = l1 * scale, l2 * scale * scale, cov * scale
        else:
            l1, l2, cov = DEFAULT_OUTPUT_TOKENS, 2.0 * DEFAULT_OUTPUT_TOKENS**2, 0.0
        if self._prompts >= self.min_finished:
            p1, p2, chunk, chunks = self._p1, self._p2, self._chunk, self._chunks
        elif self.finished >= self.min_finished:
            p1, p2, chunk, chunks = self._moments[0, 1], self._moments[1, 1], self._chunk, self._chunks
        else:
            p1, p2 = DEFAULT_PROMPT_TOKENS, 2.0 * DEFAULT_PROMPT_TOKENS**2
            budget = self._budget()
            chunk, chunks = min(p1, budget), max(1.0, math.ceil(p1 / budget))
        pl = p1 * l1 + cov
        moments = np.array([[1.0, p1, l1], [p1, p2, pl], [l1, pl, l2]])
        phases = self.rate_phases(now_s)  # the first phase's rate is the larger: rate_per_s
        return LoadView(phases[0][0], self.ca2(), moments, max(1.0, chunk), max(1.0, chunks), self._dispersion,
                        phases, float(self.token_budget or 0))

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"moments": self._moments.tolist(), "finished": self.finished, "chunk": self._chunk,
                "chunks": self._chunks, "max_chunk": self._max_chunk, "prompts": [self._prompts, self._p1, self._p2]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state after checking every value (a failure names the field, e.g.
        ``prompts[0] = -5 must be >= 0``, and changes nothing): counts are whole numbers >= 0,
        token sizes in [0, MAX_TOKENS] (their second moments up to its square)."""
        moments = array(item(state, "moments"), "moments", (3, 3), low=0.0, high=MAX_TOKENS**2)
        if moments[0, 0] > 1.0 + 1e-9:
            raise BadStateValue("moments[0, 0]", f"= {float(moments[0, 0])!r} must be <= 1 (the weight of a mean)")
        for i, j in ((0, 1), (0, 2)):
            check_number(float(moments[i, j]), f"moments[{i}, {j}]", high=MAX_TOKENS)
        finished = count(state, "finished")
        chunk = number(state, "chunk", high=MAX_TOKENS)
        chunks = number(state, "chunks", high=MAX_TOKENS)
        max_chunk = count(state, "max_chunk", default=0, high=MAX_TOKENS)
        prompts = item(state, "prompts", [0, 0.0, 0.0])
        if not isinstance(prompts, list) or len(prompts) != 3:
            raise BadStateValue("prompts", f"= {prompts!r} is not [count, mean, mean square]")
        n_prompts = int(check_number(prompts[0], "prompts[0]", integer=True))
        p1 = check_number(prompts[1], "prompts[1]", high=MAX_TOKENS)
        p2 = check_number(prompts[2], "prompts[2]", high=MAX_TOKENS**2)
        self._moments, self.finished, self._chunk, self._chunks, self._max_chunk = (
            moments, finished, chunk, chunks, max_chunk)
        self._prompts, self._p1, self._p2 = n_prompts, p1, p2
