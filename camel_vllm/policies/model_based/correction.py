"""Outcomes keep the projections honest: corrections learned from finished requests.

A finished request's measured energy and service time (first scheduled to finish) are set
against what the projection in force said for its tokens under the arms that served it, and
its measured wait (arrival to first scheduled) against the projected wait. The log-ratios
are exponentially weighted over the last ~``MEMORY`` requests and pooled over arms: the
board model already learns how each clock differs from the others from every iteration
(and :class:`~camel_vllm.policies.model_based.board.BoardModel` corrects a clock whose
iterations its model misses), so what remains for outcomes is how requests meet the board
(prefill chunks holding up decodes, attribution in mixed steps, queueing) and that is
shared by the arms. Per-arm outcome corrections were tried and dropped: an arm played when
the queue is long meets longer services for reasons that are not the arm's (carry-over),
so they turned the ranking of arms upside down at high load (docs/policies.md).

A finished request's decode-only steps (those without a prefill token) are counted as it is
served, with the share of each it took (1 / the requests in it): their mean, against the
projection's ``E[1/N]`` under the arms that served it, says how often a decoding request meets
fewer others than the steady state at the rate of its admission says (a burst's requests go on
decoding as the engine drains; long outputs finish alone), and a decode-only step's fixed
energy is shared in those proportions. The log-ratios are weighted by the request's decode-only
steps, as its energy is; the factor only ever raises the shares (meeting more others than
projected is a load the rate lags behind, which the occupancy check corrects). They are counted
from the work, not read from a sensor.

Energy and service factors are bounded to ``[1 / MAX_FACTOR, MAX_FACTOR]`` and trusted in
proportion to their evidence (``SHRINK`` pseudo-requests at no correction). The wait factor
only ever raises projected waits (at most ``WAIT_MAX``): a queue model that underestimates
waiting is corrected, one that overestimates it errs towards the faster arms, which is the
safe side.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from camel_vllm.policies.state_values import BadStateValue, array, check_number, count, item

#: Requests the corrections remember (exponential weighting).
MEMORY = 500
#: Pseudo-requests at "no correction" that the evidence must outweigh.
SHRINK = 20.0
#: Largest energy or service correction either way (a factor).
MAX_FACTOR = 2.0
#: Largest wait correction (waits are only ever raised).
WAIT_MAX = 4.0
#: Capacity check: memory (seconds of saturation), the weight at which it counts fully, and
#: the most it may raise the projected capacity (it lowers it by up to MAX_FACTOR).
CAPACITY_MEMORY_S = 60.0
CAPACITY_TRUST = 0.1
CAPACITY_MAX = 1.25
#: Widest a decode-only share ratio may read either way: a share lies between one over the batch
#: and one, and vLLM batches at most 1,024 requests by default (``default_max_num_seqs`` in
#: vllm/engine/arg_utils.py), so a wider ratio is a miscount.
SHARE_RATIO_MAX = 1024.0


class OutcomeCorrection:
    """Pooled energy, service-time and wait corrections from finished requests."""

    def __init__(self) -> None:
        self._sum = [0.0, 0.0]  # weighted log-ratio sums: energy, service
        self._abs = [0.0, 0.0]
        self._weight = [0.0, 0.0]
        self._wait_measured_s = 0.0
        self._wait_projected_s = 0.0
        self._wait_weight = 0.0
        self._cap_sum = 0.0
        self._cap_weight = 0.0
        self._share_sum = 0.0  # decode-only steps x log(measured / projected share), EWMA
        self._share_steps = 0.0  # decode-only steps, EWMA
        self._share_requests = 0.0  # requests with any, EWMA
        self.requests = 0

    def observe(self, measured: tuple[float | None, float | None], projected: tuple[float, float]) -> None:
        """One request: ``measured`` and ``projected`` (energy J, service s). A measurement
        that is None or not positive is skipped (a sensor that read nothing teaches nothing)."""
        decay = 1.0 - 1.0 / MEMORY
        self.requests += 1
        for k in range(2):
            self._sum[k] *= decay
            self._abs[k] *= decay
            self._weight[k] *= decay
            value, guess = measured[k], projected[k]
            if value is None or not value > 0.0 or not guess > 0.0:
                continue
            r = math.log(value / guess)
            self._sum[k] += r
            self._abs[k] += abs(r)
            self._weight[k] += 1.0

    def observe_shares(self, measured: float, projected: float, steps: int) -> None:
        """One request's mean share of its ``steps`` decode-only steps, ``measured`` and
        ``projected`` (the model alone); weighted by ``steps``. Nothing to learn from a request
        with none, or from a share that is not positive."""
        decay = 1.0 - 1.0 / MEMORY
        self._share_sum *= decay
        self._share_steps *= decay
        self._share_requests *= decay
        if not (steps > 0 and measured > 0.0 and projected > 0.0 and math.isfinite(measured / projected)):
            return
        bound = math.log(SHARE_RATIO_MAX)
        self._share_sum += steps * min(bound, max(-bound, math.log(measured / projected)))
        self._share_steps += steps
        self._share_requests += 1.0

    def share_factor(self) -> float:
        """Measured over projected decode-only shares: the step-weighted geometric mean of the
        requests' ratios, shrunk to 1 by SHRINK pseudo-requests of the mean weight, and at least
        1 (1 without evidence). Requests meeting more others than projected is a load the rate
        has not caught up with yet, which the occupancy check raises the rate for
        (:mod:`~camel_vllm.policies.model_based.load_checks`); lowering the shares as well would
        count it twice."""
        if self._share_requests <= 0.0 or self._share_steps <= 0.0:
            return 1.0
        pseudo = SHRINK * self._share_steps / self._share_requests
        return max(1.0, math.exp(self._share_sum / (self._share_steps + pseudo)))

    def observe_wait(self, measured_s: float, projected_s: float) -> None:
        decay = 1.0 - 1.0 / MEMORY
        self._wait_measured_s = decay * self._wait_measured_s + max(0.0, measured_s)
        self._wait_projected_s = decay * self._wait_projected_s + max(0.0, projected_s)
        self._wait_weight = decay * self._wait_weight + 1.0

    def observe_capacity(self, observed_per_s: float, projected_per_s: float, weight_s: float) -> None:
        """A stretch of ``weight_s`` seconds with a full batch and a queue throughout: requests
        admitted per second (the arm's capacity, measured) against the projected capacity."""
        if not (observed_per_s > 0.0 and projected_per_s > 0.0 and weight_s > 0.0):
            return
        r = min(math.log(MAX_FACTOR), max(-math.log(MAX_FACTOR), math.log(observed_per_s / projected_per_s)))
        decay = math.exp(-weight_s / CAPACITY_MEMORY_S)
        self._cap_sum = decay * self._cap_sum + (1.0 - decay) * r
        self._cap_weight = decay * self._cap_weight + (1.0 - decay)

    def capacity_factor(self) -> float:
        """Measured over projected capacity, in [1 / MAX_FACTOR, CAPACITY_MAX] (1 without
        evidence; the evidence must span ~CAPACITY_MEMORY_S of saturation to count fully)."""
        if self._cap_weight <= 0.0:
            return 1.0
        log_f = self._cap_sum / self._cap_weight * min(1.0, self._cap_weight / CAPACITY_TRUST)
        return float(min(CAPACITY_MAX, math.exp(log_f)))

    def factors(self) -> tuple[float, float]:
        """(energy, service) multiplicative corrections, 1.0 without evidence."""
        out = []
        for k in range(2):
            log_f = self._sum[k] / (self._weight[k] + SHRINK)
            out.append(math.exp(min(math.log(MAX_FACTOR), max(-math.log(MAX_FACTOR), log_f))))
        return out[0], out[1]

    def wait_factor(self, floor_s: float) -> float:
        """Measured over projected mean wait, at least 1 and at most WAIT_MAX (``floor_s``
        added to both keeps a ratio of tiny waits sane)."""
        if self._wait_weight <= 0:
            return 1.0
        ratio = (self._wait_measured_s + floor_s * self._wait_weight) / (
            self._wait_projected_s + floor_s * self._wait_weight)
        return float(min(WAIT_MAX, max(1.0, ratio)))

    def mean_abs_error(self) -> tuple[float, float]:
        """Recent mean |log(measured / projected)| of energy and service time (0 without data)."""
        return tuple(self._abs[k] / self._weight[k] if self._weight[k] > 0 else 0.0 for k in range(2))  # type: ignore[return-value]

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"sum": list(self._sum), "abs": list(self._abs), "weight": list(self._weight),
                "wait": [self._wait_measured_s, self._wait_projected_s, self._wait_weight],
                "capacity": [self._cap_sum, self._cap_weight],
                "shares": [self._share_sum, self._share_steps, self._share_requests], "requests": self.requests}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state after checking every value (a failure names the field and changes
        nothing): weights in [0, their memory], sums finite, the capacity sum within
        log(MAX_FACTOR) x its weight (each measurement is clipped to that)."""
        memory = MEMORY * (1.0 + 1e-9)
        sums = array(item(state, "sum"), "sum", (2,))
        abs_sums = array(item(state, "abs"), "abs", (2,), low=0.0)
        weights = array(item(state, "weight"), "weight", (2,), low=0.0, high=memory)
        wait = item(state, "wait")
        wait = array(wait, "wait", (3,), low=0.0)
        check_number(float(wait[2]), "wait[2]", high=memory)
        cap_sum, cap_weight = array(item(state, "capacity", [0.0, 0.0]), "capacity", (2,), low=None)
        check_number(cap_weight, "capacity[1]", high=1.0 + 1e-9)
        if abs(cap_sum) > math.log(MAX_FACTOR) * cap_weight * (1.0 + 1e-9) + 1e-12:
            raise BadStateValue("capacity[0]", f"= {float(cap_sum)!r} exceeds log({MAX_FACTOR:g}) x capacity[1] "
                                               f"= {math.log(MAX_FACTOR) * cap_weight:.6g}")
        share_sum, share_steps, share_requests = array(item(state, "shares", [0.0, 0.0, 0.0]), "shares", (3,),
                                                       low=None)
        check_number(share_steps, "shares[1]")
        check_number(share_requests, "shares[2]", high=memory)
        if abs(share_sum) > math.log(SHARE_RATIO_MAX) * share_steps * (1.0 + 1e-9) + 1e-12:
            raise BadStateValue("shares[0]", f"= {float(share_sum)!r} exceeds log({SHARE_RATIO_MAX:g}) x shares[1] "
                                             f"= {math.log(SHARE_RATIO_MAX) * share_steps:.6g}")
        requests = count(state, "requests", default=0)
        self._sum, self._abs, self._weight = sums.tolist(), abs_sums.tolist(), weights.tolist()
        self._wait_measured_s, self._wait_projected_s, self._wait_weight = (float(v) for v in wait)
        self._cap_sum, self._cap_weight = float(cap_sum), float(cap_weight)
        self._share_sum, self._share_steps, self._share_requests = float(share_sum), float(share_steps), float(
            share_requests)
        self.requests = requests
