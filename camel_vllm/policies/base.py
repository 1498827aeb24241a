"""The policy protocol: choose an arm in a context, learn from costs.

Policies address arms by index into the controller's :class:`~camel_vllm.core.arms.ArmSet` and
minimise cost (lower is better), on the scale the controller's cost function produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from camel_vllm.core.events import Context


@dataclass(frozen=True)
class ArmEstimate:
    """What a policy believes of one arm (in one context), for metrics and logs.

    ``pulls`` is the (possibly fractional) weight of observations credited; ``mean`` and
    ``std`` are the posterior (or empirical) mean and standard deviation of the cost's
    expected value, on the policy's cost scale. ``context_id`` is ``None`` for pooled values.
    """

    arm_index: int
    context_id: int | None
    pulls: float
    mean: float
    std: float


@dataclass(frozen=True)
class ModelReadout:
    """What a model-based policy believes of its own models, for metrics and logs.

    ``corrections``: kind (energy, service, wait, capacity, load) -> the factor outcomes (and,
    for load, the requests in the engine) apply to its projections (1.0: none). ``clock_corrections``: (clock Hz, time factor, energy factor)
    per clock, from the board's own iterations (1.0: the model fits that clock). ``errors``:
    kind (energy, service) -> recent mean |log(measured / projected)| of finished requests.
    ``iterations``: kind (time, energy) -> iterations the board model has learned from.
    ``exploratory_decisions``: decisions where a posterior draw, not the posterior mean, chose.
    """

    corrections: Mapping[str, float]
    clock_corrections: tuple[tuple[float, float, float], ...]
    errors: Mapping[str, float]
    iterations: Mapping[str, float]
    exploratory_decisions: int = 0


@runtime_checkable
class Policy(Protocol):
    """A bandit over arm indices.

    ``select`` is called once per decision epoch with the indices of arms available now and
    the arm in force (``None`` before the first decision); it returns one of ``available``.
    ``observe`` credits ``cost`` to ``arm_index`` in ``context`` with ``weight`` in (0, 1]
    (a request served by several arms credits each with its share of tokens).
    """

    name: str

    def select(self, context: Context, available: Sequence[int], current: int | None) -> int: ...

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None: ...

    def estimates(self) -> list[ArmEstimate]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
