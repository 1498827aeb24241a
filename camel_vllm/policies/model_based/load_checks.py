"""What the engine's queue says about the projections: an occupancy check (Little's law) that
raises the arrival rate the projections use, and the capacity measured over saturated stretches.

Both are read at each decision from the engine snapshot; the capacity measurement goes to the
outcome correction (:class:`~camel_vllm.policies.model_based.correction.OutcomeCorrection`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from camel_vllm.core.events import EngineSnapshot
from camel_vllm.policies.model_based.correction import OutcomeCorrection

#: Occupancy check (Little's law): at each decision the requests in the engine (running and
#: waiting) are set against what the last projection expected, rate x latency of the arm it
#: chose. Their log ratio moves a load factor (>= 1, at most OCCUPANCY_MAX) by OCCUPANCY_GAIN
#: per decision, which multiplies the arrival rate of later projections: a load that grew
#: faster than the rate and size estimates follow (outputs are known only once finished) shows
#: in the engine's queue first.
OCCUPANCY_GAIN = 0.3
OCCUPANCY_MAX = 4.0
#: A saturated stretch measures capacity once it spans this many mean service times.
CAPACITY_STRETCH_SERVICES = 3.0


@dataclass
class _Decision:
    """The engine at the last decision: time (s), requests running and waiting, the arm, and
    its projected capacity without the capacity correction (requests/s)."""

    now_s: float
    running: int
    waiting: int
    arm: int
    capacity_per_s: float


class LoadChecks:
    """The load factor (occupancy) and the saturated-stretch capacity measurement."""

    def __init__(self, caps: np.ndarray) -> None:
        self._caps = caps
        #: The factor (>= 1) on the arrival rate of later projections.
        self.occupancy = 1.0
        self._expected_in_engine: float | None = None
        self._last: _Decision | None = None
        self._arrivals_since = 0
        #: A saturated stretch so far: (seconds, requests admitted, projected capacity x seconds)
        self._stretch = (0.0, 0.0, 0.0)

    def observe_arrival(self) -> None:
        self._arrivals_since += 1

    def check_occupancy(self, snap: EngineSnapshot | None) -> None:
        """Move the load factor by the log ratio of the requests in the engine now to those the
        last projection expected (one added to both: a few requests are noise)."""
        expected = self._expected_in_engine
        if snap is None or expected is None:
            return
        ratio = (snap.num_running + snap.num_waiting + 1.0) / (expected + 1.0)
        self.occupancy = min(max(self.occupancy * ratio**OCCUPANCY_GAIN, 1.0), OCCUPANCY_MAX)

    def check_capacity(self, snap: EngineSnapshot | None, correction: OutcomeCorrection,
                       service_window_s: float) -> None:
        """Measure the capacity of the arms played over a stretch in which the batch stayed
        full and requests stayed waiting, and hand it to ``correction``. A stretch counts once
        it spans CAPACITY_STRETCH_SERVICES mean service times (``service_window_s``, s): over a
        shorter one the requests running are the long ones (those still running when the queue
        formed), so their completions would understate what the arm carries."""
        last = self._last
        if last is None or snap is None:
            return
        cap = self._caps[last.arm]
        span = snap.now_s - last.now_s
        if last.waiting > 0 and snap.num_waiting > 0 and last.running >= cap and snap.num_running >= cap and span > 0:
            admitted = self._arrivals_since - (snap.num_waiting - last.waiting)
            s_span, s_admitted, s_projected = self._stretch
            self._stretch = (s_span + span, s_admitted + admitted, s_projected + last.capacity_per_s * span)
            s_span, s_admitted, s_projected = self._stretch
            if s_span >= CAPACITY_STRETCH_SERVICES * service_window_s:
                correction.observe_capacity(s_admitted / s_span, s_projected / s_span, s_span)
                self._stretch = (0.0, 0.0, 0.0)
        else:
            self._stretch = (0.0, 0.0, 0.0)

    def expect(self, in_engine: float) -> None:
        """The requests the decision's projection expects in the engine (rate x latency)."""
        self._expected_in_engine = in_engine

    def decided(self, snap: EngineSnapshot | None, arm: int, capacity_per_s: float | None) -> None:
        """Note the engine at a decision (``capacity_per_s``: the arm's projected capacity
        without the capacity correction; None before the first projection)."""
        if snap is not None and capacity_per_s is not None:
            self._last = _Decision(snap.now_s, snap.num_running, snap.num_waiting, arm, capacity_per_s)
        self._arrivals_since = 0
