"""What the controller hands a policy: the input of one decision and the deadline of the next.

The controller owns time: it decides when an epoch ends (:meth:`Controller.decision_due
<camel_vllm.control.controller.Controller.decision_due>`) and builds one :class:`DecisionInput`
per decision; between decisions it tells a policy's ``maintain`` hook how far off the next one
is (:class:`Deadline`). A policy keeps no copy of the cadence: it reads both from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

from camel_vllm.core.config import DEFAULT_EPOCH_ITERATIONS
from camel_vllm.core.cost import CostFunction
from camel_vllm.core.events import Context, EngineSnapshot
from camel_vllm.policies.workload import WorkloadEstimator


@dataclass(frozen=True, slots=True)
class Deadline:
    """How far off the next decision is, at a ``maintain`` call: whichever bound comes first.

    ``iterations_left``: engine steps the epoch's iteration bound still allows, this one
    included (the decision falls on the step after the last); ``seconds_left``: the same for
    its time bound (``math.inf``: the epoch has none). A policy that asked to decide when the
    engine's demand doubles (``Cadence.decide_on_demand_growth``) may be asked earlier.
    """

    iterations_left: int
    seconds_left: float = math.inf

    def within(self, iterations: int, seconds: float) -> bool:
        """Whether the decision is due within ``iterations`` steps or ``seconds`` seconds."""
        return self.iterations_left <= iterations or self.seconds_left <= seconds


@dataclass(frozen=True)
class DecisionInput:
    """Everything one decision is made from, built once by the controller.

    ``context``: the decision context (:class:`~camel_vllm.control.context.ContextModel`);
    ``available``: indices of the arms that may be chosen now (never empty); ``current``: the
    arm in force (``None`` before the first decision); ``snapshot``: the engine at the decision
    (``None`` where a caller has none, e.g. the offline bandit); ``epoch_iterations`` and
    ``epoch_s``: the bounds of the epoch the chosen arm will hold (``epoch_s`` 0: none);
    ``cost``: the controller's cost function, the one every policy minimises (``None`` where a
    caller has none: a policy then ranks projections by mean EDP); ``workload``: the one estimate
    of the load (arrival rate, burstiness, request sizes) the controller keeps
    (:class:`~camel_vllm.policies.workload.WorkloadEstimator`; ``None`` where a caller has none).
    """

    context: Context
    available: Sequence[int]
    current: int | None = None
    snapshot: EngineSnapshot | None = None
    epoch_iterations: int = DEFAULT_EPOCH_ITERATIONS
    epoch_s: float = 0.0
    cost: CostFunction | None = None
    workload: WorkloadEstimator | None = None

    def among(self, available: Sequence[int]) -> DecisionInput:
        """The same decision restricted to ``available`` (a wrapping policy's safe set); the
        arm in force stays ``current`` only if it is among them."""
        return dataclasses.replace(self, available=available,
                                   current=self.current if self.current in available else None)
