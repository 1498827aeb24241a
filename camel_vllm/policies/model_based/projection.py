"""What each arm would do to the requests: projected energy, latency and EDP per request.

For every arm (clock ``f``, batch cap ``B``), from the board's per-clock coefficients
(:mod:`~camel_vllm.policies.model_based.board`) and the load (:mod:`~camel_vllm.policies.
workload`), all arms at once as numpy vectors:

*Capacity.* At a full batch of ``B`` the arm serves ``mu`` requests/s, where the prefill of
those requests stretches every step: ``mu E[S(mu)] = B``, a quadratic in ``mu`` solved in
closed form. No step carries more than the engine's token budget ``K``, so where it is known
the capacity is at most ``(K - n) / (P t_K)``: a step that fills the budget (``t_K``, at the
clock the arm's prefill runs at) with ``n = K (L - 1) / (P + L - 1)`` decoding (at most ``B``),
the share of tokens a saturated engine's requests take in decode. Requests flow through at
``min(lambda, mu)``.

*Steady state.* ``N_s`` requests run on average (Little's law, ``N_s = lambda E[S]``, in
closed form); a running request shares its decode steps with ``1 + Poisson(N_s)``
requests, at most ``B``. A decode step takes ``t_d(N)``; other requests' prefill chunks
stretch it to ``t = t_d / (1 - rho_p)``, ``rho_p = lambda E[P] g_t`` (``g_t``: seconds per
prefill token, the secant at the mean chunk beside ``N_s`` decoding: ``N_s`` is solved once
with ``g_t`` beside a full batch, then again with it beside that ``N_s``). A request's service time is its prefill
(``chunks x t_d + P g_t``) plus ``L - 1`` decode steps. Waiting for the engine is the G/G/c
queue of Sakasegawa's approximation (Sakasegawa 1977; Whitt 1993, "Approximations for the GI/G/m
queue") at the arm's capacity ``mu``: ``Wq = rho^(sqrt(2(c+1)) - 1) / ((1 - rho) mu) x (ca2 +
cs2) / 2``, with ``c`` the requests the engine serves side by side before it reaches ``mu``:
about the cap where the cap bounds the capacity, fewer where the prefill (the token budget)
does, since the requests beyond those few wait for the budget inside the engine as they would
for a slot outside it. Energy is attributed as the controller does, by tokens: a prefill token
pays the marginal prefill energy plus its share of the step's fixed energy, a decode token
``e_d(N) / N`` (``E[1/N] = (1 - e^-m) / m`` for ``N = 1 + Poisson(m)``, scaled by the shares
the outcomes measure: :mod:`~camel_vllm.policies.model_based.correction`), nearly nothing in
steps that carry someone's prefill. So energy ``E = a1 P + a2 L`` and latency ``Lat = b0 +
b1 P + b2 L`` are linear in a request's tokens, and the mean EDP is exact in the moments
``E[x x']``, ``x = (1, P, L)``: large requests weigh as much as they do in the mean.

*The queue in view.* ``Q0`` requests wait now (beyond the cap). Each arm is judged as if
held (a policy that would choose it again at the next decision does hold it): over a
horizon ``H`` (one epoch plus the time the fastest arm needs to clear ``Q0``) it drains them
at ``mu - lambda`` or grows them at ``lambda - mu``; what is left at ``H`` is drained by the
fastest arm. Arrivals are counted only for as long as they are expected (the load view's
rate phases: a burst's recent rate for its half-life, then the long-run rate for its own,
then none), so a burst is priced by the queue it leaves, not as a load that lasts for ever.
The queue-seconds this costs, ``QS`` (fluid approximation, Newell 1982), add
``E[E] x QS`` to the EDP of the ``M`` requests present or arriving within ``H``. An arm
that cannot keep up is priced by the queue it grows, never excluded by a threshold. While the
backlog drains, the engine holds as many of the requests present as the cap lets in, and each
request served then spends that crowd's service in it (``crowd / mu``, Little's law) instead of
the steady state's: a large cap shares every step among the whole backlog (processor sharing), a
small one finishes the first admitted before it takes the next. When no
arm keeps up with the arrivals still expected at ``H``, every cost grows without bound at the rate
its queue grows, so then arms are ranked by that rate alone: the fastest drain wins. The
steady-state wait is likewise held to what a queue can build in the time the load is
expected (a reflected Brownian motion from empty), since near saturation a queue takes
longer than that to settle. Arrivals that come in clumps (bursts shorter than
a service time) make each request wait for the clump's others ahead of it beyond the cap, at the
arm's capacity; the clump size comes from the dispersion of arrival counts. Inside the engine such a
request shares it with the clump around it, as many as the cap lets in, and takes that crowd's
service (at the capacity, as a backlog's crowd), so a small cap serves a clump nearly in order
and a large one shares every step among it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from camel_vllm.policies.model_based.board import CONTEXT_SCALE, SEGMENT_TOKENS, TOKEN_SCALE
from camel_vllm.policies.workload import LoadView

#: Utilisation at which an arm's steady-state wait is capped (the fluid queue term prices
#: what lies beyond).
RHO_CAP = 0.98
#: The fastest arm's drain rate is at least this share of its capacity, so an overload that
#: no arm can absorb still ranks arms by the queue they grow instead of dividing by zero.
MIN_DRAIN_SHARE = 0.05
#: Smallest time or energy coefficient a projection uses (s, J): a fresh model's draw can
#: be negative where it has no data.
FLOOR = 1e-6


@dataclass(frozen=True)
class QueueState:
    """The engine at the decision: requests running and waiting."""

    num_running: int
    num_waiting: int


@dataclass(frozen=True)
class Projection:
    """Per-arm projections (arrays over arms, (G, A) from :func:`project`; :meth:`take` one
    group as (A,) arrays). Units: J, s, J*s.

    A request of ``P`` prompt and ``L`` output tokens is projected to use ``energy_prompt_j P +
    energy_output_j L`` joules and ``service_fixed_s + service_prompt_s P + service_output_s L``
    seconds of service once scheduled, after a mean wait of ``wait_s`` (steady state plus the
    current backlog's share); ``crowd_s`` is the service that requests served while the backlog
    drains lose to the crowd the engine then holds, per request (:func:`settle`).
    """

    edp_js: np.ndarray
    wait_s: np.ndarray
    capacity_per_s: np.ndarray
    running: np.ndarray
    energy_prompt_j: np.ndarray
    energy_output_j: np.ndarray
    service_fixed_s: np.ndarray
    service_prompt_s: np.ndarray
    service_output_s: np.ndarray
    mean_prompt: float
    mean_output: float
    crowd_s: np.ndarray | float = 0.0
    #: A decoding request's mean share of a decode-only step, ``E[1/N]``, as the model alone
    #: projects it (before :attr:`SteadyStart.share_scale`).
    decode_share: np.ndarray | float = 1.0

    def take(self, group: int) -> "Projection":
        """The projection of one coefficient set (arrays over arms)."""
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        for f, v in fields.items():
            if isinstance(v, np.ndarray):
                fields[f] = v[group]
        return Projection(**fields)

    @property
    def energy_j(self) -> np.ndarray:
        """Mean energy per request (J)."""
        return self.energy_prompt_j * self.mean_prompt + self.energy_output_j * self.mean_output

    @property
    def latency_s(self) -> np.ndarray:
        """Mean latency per request, wait and crowd included (s)."""
        return (self.wait_s + self.crowd_s + self.service_fixed_s + self.service_prompt_s * self.mean_prompt
                + self.service_output_s * self.mean_output)


@dataclass(frozen=True)
class ArmGeometry:
    """What a projection needs of the arms: each arm's clock and batch cap, as indices into
    the board's clocks and the distinct caps (computed once per arm set)."""

    caps: np.ndarray  # (A,) batch caps
    clock_index: np.ndarray  # (A,) row of the arm's clock in the per-clock coefficients
    cap_index: np.ndarray  # (A,) position of the arm's cap in ``distinct_caps``
    distinct_caps: np.ndarray  # (B,)
    span: np.ndarray  # max(cap - 1, 1): the secant's run
    inv_caps: np.ndarray
    full_work: np.ndarray  # (B, 5) a full batch's work terms, the context column per context token
    knots: tuple[float, float] = SEGMENT_TOKENS  # the board model's token segments
    #: (A,) the clock of the arm's prefill steps (its own clock where it has no other); None:
    #: no arm runs its prefill steps at another clock.
    prefill_index: np.ndarray | None = None

    @classmethod
    def of(cls, caps: np.ndarray, clock_index: np.ndarray | None = None,
           knots: tuple[float, float] = SEGMENT_TOKENS, prefill_index: np.ndarray | None = None) -> "ArmGeometry":
        caps = np.asarray(caps, dtype=float)
        distinct, cap_index = np.unique(caps, return_inverse=True)
        clocks = np.zeros(caps.size, dtype=np.intp) if clock_index is None else np.asarray(clock_index, dtype=np.intp)
        full = np.concatenate([np.ones((distinct.size, 1)), _segments(distinct, knots), distinct[:, None]], axis=1)
        if prefill_index is not None:
            prefill_index = np.asarray(prefill_index, dtype=np.intp)
            if np.array_equal(prefill_index, clocks):
                prefill_index = None
        return cls(caps, clocks, cap_index, distinct, np.maximum(caps - 1.0, 1.0), 1.0 / caps,
                   full, knots, prefill_index)


def _segments(tokens: np.ndarray, knots: tuple[float, float] = SEGMENT_TOKENS) -> np.ndarray:
    """(n, 3) tokens of a step in each token segment (``knots``, board.segment_knots), over TOKEN_SCALE."""
    lo, hi = knots
    out = np.empty((tokens.size, 3))
    out[:, 0] = np.minimum(tokens, lo)
    out[:, 1] = np.minimum(np.maximum(tokens - lo, 0.0), hi - lo)
    out[:, 2] = np.maximum(tokens - hi, 0.0)
    return out / TOKEN_SCALE


def step_work(arms: ArmGeometry, load: LoadView) -> np.ndarray:
    """(5, 1 + 2B) work terms of three steps per distinct cap, as columns: one request
    decoding, then per cap a full batch decoding, then per cap what one prefill token adds to
    a full batch; where the token budget is known (``load.budget_tokens``), (5, 1 + 3B): then
    per cap a step that fills the budget (:func:`budget_decoding` decoding, the rest prefill).
    One matrix product with a clock's coefficients gives them all."""
    ctx = load.decode_context_tokens / CONTEXT_SCALE
    full = arms.full_work * np.array([1.0, 1.0, 1.0, 1.0, ctx])
    extra = np.zeros_like(full)
    chunk = load.mean_chunk_tokens
    extra[:, 1:4] = (_segments(arms.distinct_caps + chunk, arms.knots) - full[:, 1:4]) * (1.0 / chunk)
    columns = [[[1.0, 1.0 / TOKEN_SCALE, 0.0, 0.0, ctx]], full, extra]
    if load.budget_tokens > 0:
        budget = np.empty_like(full)
        budget[:, 0] = 1.0
        budget[:, 1:4] = _segments(np.array([load.budget_tokens]), arms.knots)
        budget[:, 4] = budget_decoding(arms.distinct_caps, load) * ctx
        columns.append(budget)
    return np.concatenate(columns).T


def budget_decoding(caps: np.ndarray, load: LoadView) -> np.ndarray:
    """Requests decoding in a step that fills the token budget ``K`` while prompts wait: each
    request takes ``P`` prefill and ``L - 1`` decode tokens, so a saturated engine's steps split
    the budget in that proportion, ``K (L - 1) / (P + L - 1)`` decoding, at most the cap."""
    mean_p, mean_l = load.mean_prompt, max(1.0, load.mean_output)
    share = (mean_l - 1.0) / max(mean_p + mean_l - 1.0, 1.0)
    return np.minimum(caps, load.budget_tokens * share)


@dataclass(frozen=True)
class Steady:
    """The part of a projection that does not depend on the queue now (arrays (G, A) unless
    noted): computed ahead of a decision, so that the decision itself only prices the queue
    (:func:`settle`). ``wait_steady_s`` is the steady-state wait (Sakasegawa plus clumps)
    before ``wait_scale``; ``edp_base_js + edp_per_wait_j x wait`` is the mean EDP at a mean
    wait ``wait``."""

    rate_per_s: float
    caps: np.ndarray  # (A,)
    capacity_per_s: np.ndarray
    fastest_per_s: np.ndarray  # (G, 1)
    best_drain_per_s: np.ndarray  # (G, 1)
    step_min_s: np.ndarray  # (G, 1) the shortest decode step of any arm
    wait_steady_s: np.ndarray
    wait_scale: float
    edp_base_js: np.ndarray
    edp_per_wait_j: np.ndarray
    running: np.ndarray
    energy_prompt_j: np.ndarray
    energy_output_j: np.ndarray
    service_fixed_s: np.ndarray
    service_prompt_s: np.ndarray
    service_output_s: np.ndarray
    mean_prompt: float
    mean_output: float
    #: A request's mean service in the steady state (s): the service terms at the mean sizes.
    service_s: np.ndarray | float = 0.0
    #: The arrivals the queue in view counts (:attr:`~camel_vllm.policies.workload.LoadView.
    #: rate_phases`): empty, ``rate_per_s`` for as long as it is priced.
    rate_phases: tuple[tuple[float, float], ...] = ()
    #: A decoding request's mean share of a decode-only step, ``E[1/N]``, the model alone's.
    decode_share: np.ndarray | float = 1.0


def project(
    arms: ArmGeometry,
    coef: np.ndarray,
    top_time_coef: np.ndarray,
    load: LoadView,
    queue: QueueState,
    epoch_iterations: int,
    *,
    energy_scale: float = 1.0,
    service_scale: float | np.ndarray = 1.0,
    wait_scale: float = 1.0,
    work: np.ndarray | None = None,
    share_scale: float = 1.0,
) -> Projection:
    """Project every arm for G coefficient sets at once: :func:`steady_start`,
    :func:`steady_chunk` and :func:`steady_finish`, then :func:`settle` with the queue now (arguments as there)."""
    if work is None:
        work = step_work(arms, load)
    return settle(steady_finish(steady_start(arms, clock_steps(arms, coef, top_time_coef, work), load,
                                             energy_scale=energy_scale, service_scale=service_scale,
                                             wait_scale=wait_scale, share_scale=share_scale)),
                  queue, epoch_iterations)


@dataclass(frozen=True)
class ClockSteps:
    """Each arm's steps at its clock, for G coefficient sets ((G, A) arrays; :func:`clock_steps`):
    one request decoding (``t1``, ``e1``), a full batch (``t_full``), the secant's slopes per
    request decoding (``beta_t``, ``beta_e``) and per prefill token beside a full batch
    (``g_t``, ``g_e``). They need only the coefficients and the steps' work (:func:`step_work`),
    not the arrival rate, so a caller can compute them as soon as those are known."""

    #: (G, A, R, 5) rows of coefficients :func:`chunk_marginal` prices a chunk with: the time and
    #: energy of the clock the arm's prefill steps run at, the top clock's time, and where that
    #: is another clock than the arm's (``prefill`` set), the arm's clock's time and energy.
    chunk_rows: np.ndarray
    t1: np.ndarray
    t_full: np.ndarray
    g_t: np.ndarray
    e1: np.ndarray
    g_e: np.ndarray
    beta_t: np.ndarray
    beta_e: np.ndarray
    prefill: "_PrefillSteps | None" = None
    #: (G, A) a step that fills the token budget, at the clock the arm's prefill runs at (s);
    #: None where the budget is not known.
    t_budget: np.ndarray | None = None


@dataclass(frozen=True)
class _PrefillSteps:
    """For arms whose prefill steps run at another clock: which arms differ (A,), that clock's
    marginal seconds and joules per prefill token beside a full batch, the gap between its
    full-batch step and the arm's (s, J), and its power in that step (W)."""

    differs: np.ndarray
    g_t: np.ndarray
    g_e: np.ndarray
    t_full_gap: np.ndarray
    e_full_gap: np.ndarray
    power_w: np.ndarray


def clock_steps(arms: ArmGeometry, coef: np.ndarray, top_time_coef: np.ndarray, work: np.ndarray) -> ClockSteps:
    """Each arm's steps (:class:`ClockSteps`) from ``coef`` (G, C, 2, 5: each clock's time
    (``[..., 0, :]``) and energy (``[..., 1, :]``) coefficients of the five work terms; the row
    of an arm's clock is ``arms.clock_index``), ``top_time_coef`` (G, 5) and ``work``
    (:func:`step_work`). No arm's step is taken faster than the highest clock doing the same
    work (the roofline's physics: a lower clock is no faster; a fresh model's draw can say
    otherwise where it has no data)."""
    nb = arms.distinct_caps.size
    per_clock = np.swapaxes(coef @ work, 2, 3)  # (G, C, 1 + 2B, 2): time and energy last
    top = top_time_coef @ work  # (G, 1 + 2B)
    ci, bi = arms.clock_index, arms.cap_index
    v1 = per_clock[:, ci, 0]  # (G, A, 2)
    v_full = per_clock[:, ci, 1 + bi]
    v_tok = per_clock[:, ci, 1 + nb + bi]
    t1 = np.maximum(np.maximum(v1[..., 0], top[:, :1]), FLOOR)
    t_full = np.maximum(np.maximum(v_full[..., 0], top[:, 1 + bi]), t1)
    g_t = np.maximum(np.maximum(v_tok[..., 0], top[:, 1 + nb + bi]), FLOOR)
    e1 = np.maximum(v1[..., 1], FLOOR)
    g_e = np.maximum(v_tok[..., 1], 0.0)
    beta_t = (t_full - t1) / arms.span
    beta_e = np.maximum(v_full[..., 1] - e1, 0.0) / arms.span
    t_budget = None
    if work.shape[-1] > 1 + 2 * nb:  # the token budget's step (step_work)
        col = 1 + 2 * nb + bi
        at = ci if arms.prefill_index is None else arms.prefill_index
        t_budget = np.maximum(np.maximum(per_clock[:, at, col, 0], top[:, col]), FLOOR)
    prefill = None
    top_rows = np.broadcast_to(top_time_coef[:, None, None, :], (t1.shape[0], ci.size, 1, top_time_coef.shape[-1]))
    if arms.prefill_index is None:
        rows = np.concatenate([coef[:, ci], top_rows], axis=2)
    else:
        pi = arms.prefill_index
        p_tok = per_clock[:, pi, 1 + nb + bi]
        p_full = per_clock[:, pi, 1 + bi]
        p_t_full = np.maximum(p_full[..., 0], top[:, 1 + bi])
        prefill = _PrefillSteps(
            pi != ci, np.maximum(np.maximum(p_tok[..., 0], top[:, 1 + nb + bi]), FLOOR),
            np.maximum(p_tok[..., 1], 0.0), p_t_full - t_full, p_full[..., 1] - v_full[..., 1],
            np.maximum(p_full[..., 1], FLOOR) / np.maximum(p_t_full, FLOOR))
        rows = np.concatenate([coef[:, pi], top_rows, coef[:, ci]], axis=2)
    return ClockSteps(rows, t1, t_full, g_t, e1, g_e, beta_t, beta_e, prefill, t_budget)


@dataclass(frozen=True)
class SteadyStart:
    """The first part of the steady-state projection (:func:`steady_start`): each arm's steps
    (``steps``), the seconds and joules per prefill token at the clock its prefill runs at, beside
    a full batch (``g_t``, ``g_e``: ``steps``' own where that is the arm's clock), its capacity,
    and the mean number running besides a request with that prefill price (``running_full``)."""

    load: LoadView
    caps: np.ndarray
    inv_caps: np.ndarray
    energy_scale: float
    service_scale: float | np.ndarray
    wait_scale: float
    steps: ClockSteps
    g_t: np.ndarray
    g_e: np.ndarray
    c: np.ndarray
    k_dec: np.ndarray
    capacity: np.ndarray
    running_full: np.ndarray
    #: What :func:`chunk_marginal` needs to price a prefill token beside ``n`` decoding rather
    #: than beside a full batch, besides ``steps.chunk_rows``: the context per decode request
    #: (over CONTEXT_SCALE), the token knots; for arms whose prefill runs at another clock (None
    #: where none does): which arms differ (A,), and the switches' share per prefill token ((G,
    #: A) time and energy; 0 without a switch cost).
    context: float
    knots: tuple[float, float]
    prefill: "_PrefillClock | None" = None
    #: Measured over projected shares of decode-only steps (the outcome correction's; 1 without
    #: evidence): how much more often than the steady state's ``E[1/N]`` says a decoding request
    #: shares such a step with few others.
    share_scale: float = 1.0


@dataclass(frozen=True)
class _PrefillClock:
    """The other clock of arms whose prefill steps run at one (see :class:`SteadyStart`)."""

    differs: np.ndarray
    switch_t: Any
    switch_e: Any


def steady_start(
    arms: ArmGeometry,
    steps: ClockSteps,
    load: LoadView,
    *,
    energy_scale: float = 1.0,
    service_scale: float | np.ndarray = 1.0,
    wait_scale: float = 1.0,
    switch: Any = None,
    share_scale: float = 1.0,
) -> SteadyStart:
    """The queue-free part of the projection of every arm for G coefficient sets at once, from
    each arm's steps (:func:`clock_steps`); every output is (G, A). One call serves the
    posterior mean, a Thompson draw and a pessimistic scenario together (numpy's cost here is
    per call, not per arm). ``energy_scale``, ``service_scale`` and ``wait_scale`` are the outcome
    corrections (:mod:`~camel_vllm.policies.model_based.correction`), 1 without evidence, and so
    is ``share_scale`` (:attr:`SteadyStart.share_scale`).
    ``service_scale`` may differ per group (an array of G): a group projected with slower
    service is the same model with less capacity (a pessimistic scenario).

    An arm whose prefill steps run at another clock (``arms.prefill_index``): a step carrying a
    prefill chunk runs at that clock, decode steps at the arm's, so each prefill token costs the
    prefill clock's marginal time and energy plus its chunk's share of the difference between
    the two clocks' base step, plus the clock switches a prompt brings (``switch``: a
    :class:`~camel_vllm.policies.model_based.switching.SwitchCost`, its measured cost and
    switches per prompt; none: free).

    A step's time (and energy) is linear in the number decoding ``n`` between one and a full
    batch (the secant: the token segments make it convex, so this errs slow), which makes the
    occupancy's fixed point and the capacity closed-form. Written for few numpy calls. This is
    the second of four parts (:func:`clock_steps` before it; :func:`steady_chunk` and
    :func:`steady_finish` after), so that a caller can spread the work over engine iterations.
    """
    caps = arms.caps
    m = load.moments
    if isinstance(service_scale, np.ndarray):
        service_scale = service_scale[:, None]
    mean_p, mean_l = float(m[0, 1]), max(1.0, float(m[0, 2]))
    chunks = load.mean_chunks
    t1, t_full, g_t, g_e = steps.t1, steps.t_full, steps.g_t, steps.g_e
    prefill = None
    if steps.prefill is not None:
        g_t, g_e, prefill = _prefill_at_own_clock(steps.prefill, g_t, g_e, load.mean_chunk_tokens, mean_p, switch)

    # Capacity at a full batch: A0 c mu^2 - (A0 + K + B c) mu + B = 0 (smaller root), with
    # S(mu) = A0 + K / (1 - mu c): A0 the prefill, K the decode steps, c the prefill share.
    c = mean_p * g_t
    a0 = (chunks * t_full + c) * service_scale
    k_dec = (mean_l - 1.0) * service_scale * t_full
    lin = a0 + k_dec + caps * c
    capacity = 2.0 * caps / (lin + np.sqrt(np.maximum(lin * lin - 4.0 * caps * a0 * c, 0.0)))
    if steps.t_budget is not None:
        # No step carries more than the token budget K: prompts go through at most at the
        # budget's prefill share per step that fills it ((K - n) / (P t_K)). The full-batch
        # formula prices a prefill token at its marginal cost beside the batch, so it lets a
        # large cap run many prompts' chunks in one step, and a decode clock far below the
        # prefill clock make those steps look almost free.
        prefill_tokens = load.budget_tokens - budget_decoding(caps, load)
        capacity = np.minimum(capacity, prefill_tokens / (max(mean_p, 1.0) * steps.t_budget))
    # Mean number running besides a request (closed form), the prefill token priced beside a full batch.
    flow = np.minimum(capacity * RHO_CAP, load.rate_per_s)
    running, _ = _occupancy(flow, c, mean_l, chunks, service_scale, steps.beta_t, t1, caps)
    return SteadyStart(load, caps, arms.inv_caps, energy_scale, service_scale, wait_scale,
                       steps, g_t, g_e, c, k_dec, capacity, running, load.decode_context_tokens / CONTEXT_SCALE,
                       arms.knots, prefill, share_scale)


def _prefill_at_own_clock(pre: _PrefillSteps, g_t: np.ndarray, g_e: np.ndarray, chunk: float, mean_p: float,
                          switch: Any) -> tuple[np.ndarray, np.ndarray, _PrefillClock]:
    """Per prefill token (``chunk``: the mean chunk's tokens): the prefill clock's marginal time
    and energy, the chunk's share of the base step's change from the arm's clock to the prefill
    clock, and the switches a prompt brings; and what :func:`chunk_marginal` needs of the prefill clock."""
    differs = pre.differs
    gt_p = pre.g_t + pre.t_full_gap / chunk
    ge_p = pre.g_e + pre.e_full_gap / chunk
    switch_t: Any = 0.0
    switch_e: Any = 0.0
    if switch is not None:
        latency_s, energy_j = switch.cost(pre.power_w)
        per_token = switch.per_prompt / max(mean_p, 1.0)
        switch_t = np.where(differs, per_token * latency_s, 0.0)
        switch_e = np.where(differs, per_token * energy_j, 0.0)
        gt_p = gt_p + switch_t
        ge_p = ge_p + switch_e
    return (np.where(differs, np.maximum(gt_p, FLOOR), g_t), np.where(differs, np.maximum(ge_p, 0.0), g_e),
            _PrefillClock(differs, switch_t, switch_e))


def chunk_marginal(sp: SteadyStart, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G, A) seconds and joules one prefill token adds to a step it shares with ``n`` (G, A)
    decoding requests, on each arm (as ``g_t`` and ``g_e`` of :func:`steady_start`, which are
    taken beside a full batch: right for the capacity, where the batch is full, but below it a
    larger cap would price the same chunk higher where the token segments are convex, though
    the cap holds no one back). An arm whose prefill steps run at another clock adds the
    chunk's share of the two clocks' steps of ``n`` and the switches."""
    chunk = sp.load.mean_chunk_tokens
    knots, inv_chunk = sp.knots, 1.0 / chunk
    flat = n.reshape(-1)
    seg_n = _segments(flat, knots).reshape(n.shape + (3,))
    dseg = (_segments(flat + chunk, knots).reshape(n.shape + (3,)) - seg_n) * inv_chunk
    prefill, rows = sp.prefill, sp.steps.chunk_rows
    add = np.einsum("gakj,gaj->gak", rows[:, :, :3, 1:4], dseg)  # (G, A, 3): the prefill clock's t, e; the top's t
    g_t = np.maximum(np.maximum(add[..., 0], add[..., 2]), FLOOR)
    g_e = np.maximum(add[..., 1], 0.0)
    if prefill is None:
        return g_t, g_e
    work = np.concatenate([np.ones(n.shape + (1,)), seg_n, (n * sp.context)[..., None]], axis=-1)
    on = np.einsum("gakj,gaj->gak", rows, work)  # (G, A, 5): the prefill clock's t, e; the top's t; the arm's t, e
    top_t = on[..., 2]
    base_t = (np.maximum(on[..., 0], top_t) - np.maximum(on[..., 3], top_t)) * inv_chunk
    base_e = (on[..., 1] - on[..., 4]) * inv_chunk
    differs = prefill.differs
    gt_p = np.maximum(g_t + base_t + prefill.switch_t, FLOOR)
    ge_p = np.maximum(g_e + base_e + prefill.switch_e, 0.0)
    return np.where(differs, gt_p, g_t), np.where(differs, ge_p, g_e)


@dataclass(frozen=True)
class SteadyChunk:
    """The middle of the steady-state projection (:func:`steady_chunk`): the (G, A) seconds and
    joules per prefill token beside the mean number decoding, for :func:`steady_finish`."""

    start: SteadyStart
    g_t: np.ndarray
    g_e: np.ndarray


def steady_chunk(sp: SteadyStart) -> SteadyChunk:
    """The prefill token priced again, beside the mean number decoding that :func:`steady_start`
    found (:func:`chunk_marginal`)."""
    g_t, g_e = chunk_marginal(sp, np.minimum(sp.running_full + 1.0, sp.caps))
    return SteadyChunk(sp, g_t, g_e)


def steady_finish(chunk_priced: SteadyStart | SteadyChunk) -> Steady:
    """The last part of the steady-state projection: occupancy, energy, service, steady wait, EDP
    terms (from :func:`steady_chunk`'s result, or from :func:`steady_start`'s, priced here)."""
    if isinstance(chunk_priced, SteadyStart):
        chunk_priced = steady_chunk(chunk_priced)
    sp, g_t, g_e = chunk_priced.start, chunk_priced.g_t, chunk_priced.g_e
    load, caps, capacity, t1, e1 = sp.load, sp.caps, sp.capacity, sp.steps.t1, sp.steps.e1
    beta_t, beta_e, k_dec, service_scale = sp.steps.beta_t, sp.steps.beta_e, sp.k_dec, sp.service_scale
    energy_scale, wait_scale = sp.energy_scale, sp.wait_scale
    lam = load.rate_per_s
    m = load.moments
    mean_p, mean_l = float(m[0, 1]), max(1.0, float(m[0, 2]))
    var_p, var_l = max(0.0, float(m[1, 1]) - mean_p**2), max(0.0, float(m[2, 2]) - mean_l**2)
    chunk, chunks = load.mean_chunk_tokens, load.mean_chunks
    flow = np.minimum(capacity * RHO_CAP, lam)  # what gets through

    # Mean number running besides a request, with the prefill token priced beside that many
    # decoding (steady_chunk) rather than beside a full batch.
    c = mean_p * g_t
    running, stretch = _occupancy(flow, c, mean_l, chunks, service_scale, beta_t, t1, caps)
    t_d = t1 + beta_t * running
    t_bar = t_d * stretch

    # Energy per token, attributed by tokens as the controller does.
    n = running + 1.0
    e_d = e1 + beta_e * running
    e_fixed = np.maximum(e1 - beta_e, 0.0)
    inv_n = np.maximum(-np.expm1(-running) / np.maximum(running, 1e-9), sp.inv_caps)
    share = np.minimum(flow * chunks * t_bar, 1.0)  # of a request's steps that carry a prefill
    # A decode-only step's fixed energy is split among the requests in it: E[1/N] of it a token,
    # as the outcomes measure it (share_scale), between one over the cap and one.
    inv_seen = np.clip(inv_n * sp.share_scale, sp.inv_caps, 1.0)
    a_prompt = (g_e + e_d / chunk) * energy_scale
    a_output = ((1.0 - share) * (e_fixed * inv_seen + beta_e) + share * e_d / (chunk + n)) * energy_scale

    # Service (no queue): prefill chunks, prompt tokens, then L - 1 decode steps.
    b_fixed = (chunks * t_d - t_bar) * service_scale
    b_prompt = g_t * service_scale
    b_output = t_bar * service_scale

    # Waiting for the engine: G/G/c at its capacity (Sakasegawa), with as many servers as
    # requests the engine serves side by side before it reaches its capacity (servers_at_capacity).
    rho = np.minimum(lam / capacity, RHO_CAP)
    service_full = caps / capacity
    cs2 = ((k_dec * (1.0 / max(mean_l - 1.0, 1.0))) ** 2 * var_l
           + (sp.g_t * service_scale) ** 2 * var_p) / service_full**2  # a full batch's service
    alone, slope = service_line(sp, mean_l, chunks)
    servers = servers_at_capacity(capacity, caps, alone, slope)
    wq = rho ** (np.sqrt(2.0 * (servers + 1.0)) - 1.0) / ((1.0 - rho) * capacity) * (load.ca2 + cs2) * 0.5
    # That is the wait once the queue has settled, which near saturation takes longer than any
    # load lasts (the relaxation time grows as 1 / (1 - rho)^2). A load that lasts T builds from
    # empty a mean queue of at most sqrt(2 sigma^2 t / pi) by t (reflected Brownian motion
    # without drift, distributed as |B_t|: Harrison 1985, "Brownian Motion and Stochastic Flow
    # Systems"; the heavy-traffic limit of the queue, sigma^2 = lam ca2 + mu cs2 requests^2/s),
    # a mean wait over T of (2/3) sqrt(2 sigma^2 T / pi) / mu: the steady wait is held to that.
    if math.isfinite(load.rate_horizon_s):
        sigma2 = lam * load.ca2 + capacity * cs2
        wq = np.minimum(wq, (2.0 / 3.0) * np.sqrt(2.0 / math.pi * sigma2 * load.rate_horizon_s) / capacity)

    fastest = capacity.max(axis=-1, keepdims=True)
    service_s = b_fixed + b_prompt * mean_p + b_output * mean_l
    # Clumped arrivals: a request arriving in a clump has m - 1 = (dispersion - 1) / 2 others
    # ahead of it on average (size-biased geometric clumps of mean m) and as many behind it:
    # what the renewal formula above misses about bursts. Those ahead beyond the cap go first,
    # one finishing for each let in (at the arm's capacity); inside, it shares the engine with
    # the clump around it, as many as the cap lets in, and takes that crowd's service (at most
    # the engine's capacity: crowd / mu, as settle prices a backlog's crowd) instead of the
    # steady state's. A small cap serves a clump nearly in order, a large one shares every step
    # among it (the later prompts' prefill stretches the earlier ones' decode).
    ahead = max(0.0, load.dispersion - 1.0) * 0.5
    crowd = np.minimum(caps, 1.0 + 2.0 * ahead)
    in_crowd = np.maximum(alone + slope * crowd, crowd / capacity)
    burst = np.maximum(ahead + 1.0 - caps, 0.0) / capacity + np.maximum(in_crowd - service_s, 0.0)
    # Mean EDP over (1, P, L) moments: E[(a1 P + a2 L)(b0 + b1 P + b2 L)] with b0 = wait + fixed.
    per_wait = a_prompt * m[0, 1] + a_output * m[0, 2]
    base = (a_prompt * (b_fixed * m[0, 1] + b_prompt * m[1, 1] + b_output * m[1, 2])
            + a_output * (b_fixed * m[0, 2] + b_prompt * m[1, 2] + b_output * m[2, 2]))
    return Steady(
        rate_per_s=lam, caps=caps, capacity_per_s=capacity, fastest_per_s=fastest,
        best_drain_per_s=np.maximum(fastest - lam, MIN_DRAIN_SHARE * fastest),
        step_min_s=t_bar.min(axis=-1, keepdims=True), wait_steady_s=wq + burst, wait_scale=wait_scale,
        edp_base_js=base, edp_per_wait_j=per_wait, running=running,
        energy_prompt_j=a_prompt, energy_output_j=a_output,
        service_fixed_s=b_fixed, service_prompt_s=b_prompt, service_output_s=b_output,
        mean_prompt=mean_p, mean_output=mean_l, rate_phases=load.rate_phases,
        service_s=service_s, decode_share=inv_n,
    )


def servers_at_capacity(capacity: np.ndarray, caps: np.ndarray, alone: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """(G, A) how many requests each arm's engine serves side by side before it reaches its
    capacity: the servers of its G/G/c wait. With ``n`` running and none of them slowed by the
    others' prefill a request's service is ``S(n) = A + B' n`` (``alone``, ``slope``), so the
    engine would finish ``n / S(n)`` requests a second; that reaches the capacity at ``n = mu A /
    (1 - mu B')``. Where the cap bounds the capacity that is about the cap. Where the token
    budget bounds it (a step that fills the budget serves no more prompts however many run) it is
    fewer: the requests beyond them wait for the budget, inside the engine (stretching the decode
    of those ahead) as they would for a slot outside it, so a small cap waits no longer than a
    large one there. ``capacity``: mu (req/s); ``alone``, ``slope``: :func:`service_line`'s."""
    room = 1.0 - capacity * slope
    n_c = np.where(room > 1e-9, capacity * alone / np.maximum(room, 1e-9), caps)
    return np.clip(n_c, 1.0, caps)


def service_line(sp: SteadyStart, mean_l: float, chunks: float) -> tuple[np.ndarray, np.ndarray]:
    """(G, A) a request's service with ``n`` running, ``S(n) = alone + slope x n`` (s): its
    prefill chunks and decode steps, each ``t1 + beta_t (n - 1)``, and its prompt's own prefill;
    not stretched by the others' prefill, which is what bounds the engine at its capacity."""
    steps, ss = sp.steps, sp.service_scale
    per_step = (chunks + mean_l - 1.0) * ss
    return per_step * (steps.t1 - steps.beta_t) + sp.c * ss, per_step * steps.beta_t


def _occupancy(flow: np.ndarray, c: np.ndarray, mean_l: float, chunks: float, service_scale: Any,
               beta_t: np.ndarray, t1: np.ndarray, caps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean number running besides a request, ``N = flow S(N)`` with ``S(N) = A + B' N`` (closed
    form, at most ``cap - 1``), and the stretch of its steps by others' prefill (``c``: a
    request's prefill seconds)."""
    stretch = 1.0 / (1.0 - np.minimum(flow * c, RHO_CAP))
    steps = (mean_l - 1.0) * stretch + chunks
    grow = flow * service_scale * steps * beta_t
    running = flow * service_scale * (steps * t1 + c) / np.maximum(1.0 - grow, 1e-9)
    return np.minimum(np.maximum(running + (grow >= 1.0) * caps, 0.0), caps - 1.0), stretch


def _fluid(q: np.ndarray, net: np.ndarray, duration: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fluid queue of ``q`` growing at ``net`` per second (shrinking where negative, never
    below empty) for ``duration`` seconds: (its queue-seconds, its length at the end, how long
    it is not empty)."""
    duration = np.maximum(duration, 0.0)
    end = q + net * duration
    empties = end <= 0.0
    drain = np.maximum(-net, 1e-12)
    area = np.where(empties, q * q * 0.5 / drain, duration * 0.5 * (q + end))
    return area, np.maximum(end, 0.0), np.where(empties, q / drain, duration)


def settle(st: Steady, queue: QueueState, epoch_iterations: int, rate_per_s: float | None = None) -> Projection:
    """Price the queue now (``queue``) into a :class:`Steady` projection: the backlog held
    under each arm for one epoch (``epoch_iterations`` of the fastest decode step) plus the
    time the fastest arm needs to clear it, the rest drained by the fastest arm (module
    docstring); waits and EDP per arm. ``rate_per_s``: the arrival rate now, where it moved
    since ``st`` was made (the queue's drain uses it; the steady state keeps its own)."""
    capacity = st.capacity_per_s
    lam = st.rate_per_s if rate_per_s is None else rate_per_s
    best_drain = st.best_drain_per_s if rate_per_s is None else np.maximum(
        st.fastest_per_s - lam, MIN_DRAIN_SHARE * st.fastest_per_s)
    q0 = np.maximum(queue.num_running - st.caps, 0.0) + float(queue.num_waiting)
    # The current backlog under the arm held over H, the rest drained by the fastest arm;
    # arrivals are counted as the load view expects them (st.rate_phases), no longer.
    horizon = epoch_iterations * st.step_min_s + float(q0.max()) / best_drain
    phases = st.rate_phases or ((lam, math.inf),)
    if rate_per_s is not None:  # the rate moved since st: the first phase's rate is the new one
        phases = ((lam, phases[0][1]),) + tuple(phases[1:])
    queue_s, q_end, busy_s = np.zeros_like(capacity), q0, np.zeros_like(capacity)
    begin, arrived = np.zeros_like(horizon), np.zeros_like(horizon)
    rate_at_end = np.zeros_like(horizon)  # the arrival rate expected at H
    for rate, until_s in phases:
        rate_at_end = np.where((begin < horizon) & (until_s >= horizon), rate, rate_at_end)
        end = np.minimum(horizon, until_s)
        area, q_end, busy = _fluid(q_end, rate - capacity, end - begin)
        queue_s, busy_s = queue_s + area, busy_s + busy
        arrived, begin = arrived + rate * np.maximum(end - begin, 0.0), end
    area, q_end, busy = _fluid(q_end, -capacity, horizon - begin)
    busy_s = busy_s + busy
    # While the backlog drains the engine holds the requests there now and waiting, as many as
    # the cap lets in (arrivals while it drains take the places of those that finish). The
    # requests served then (capacity x the busy time, and the rest at H) each spend that crowd's
    # service in it, crowd / mu (Little's law), rather than the steady state's: a large cap
    # shares every step among the whole backlog, a small one finishes the first in before it
    # admits the next.
    crowd = np.minimum(st.caps, float(queue.num_running + queue.num_waiting))
    crowd_total_s = (capacity * busy_s + q_end) * np.maximum(crowd / capacity - st.service_s, 0.0)
    arrivals_end = begin >= horizon  # arrivals go on past H: the fastest arm drains the rest beside them
    queue_s = queue_s + area + q_end * q_end * (0.5 / np.where(arrivals_end, best_drain, st.fastest_per_s))
    population = np.maximum(queue.num_running + queue.num_waiting + arrived, 1.0)
    wait = (queue_s * (1.0 / population) + st.wait_steady_s) * st.wait_scale
    crowd_s = crowd_total_s * (1.0 / population)
    edp = st.edp_base_js + st.edp_per_wait_j * (wait + crowd_s)
    # Overload: no arm keeps up with the arrivals still expected at H (a burst's rate that
    # has given way to a lower one by then is priced by the queue it leaves). Every arm's queue,
    # and so its cost, grows without bound; the cost's order is that of the growth rate, lambda - mu,
    # whatever energy a request takes. The EDP is scaled so the arm that grows its queue least
    # is cheapest. (Arrivals expected for a bounded time leave every cost bounded.)
    overload = (st.fastest_per_s <= rate_at_end) & arrivals_end
    if overload.any():
        edp = np.where(overload, edp.max(axis=-1, keepdims=True) * (1.0 + (lam - capacity) / lam), edp)
    return Projection(
        edp_js=edp, wait_s=wait, capacity_per_s=capacity, running=st.running,
        energy_prompt_j=st.energy_prompt_j, energy_output_j=st.energy_output_j,
        service_fixed_s=st.service_fixed_s, service_prompt_s=st.service_prompt_s,
        service_output_s=st.service_output_s, mean_prompt=st.mean_prompt, mean_output=st.mean_output,
        crowd_s=crowd_s, decode_share=st.decode_share,
    )
