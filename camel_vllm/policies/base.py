"""The policy protocol: choose an arm in a context, learn from costs.

Policies address arms by index into the controller's :class:`~camel_vllm.arms.ArmSet` and
minimise cost (lower is better), on the scale the controller's cost function produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from camel_vllm.types import Context


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
