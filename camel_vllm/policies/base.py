"""The policy base class: choose an arm in a context, learn from costs, and the optional hooks.

Policies address arms by index into the controller's :class:`~camel_vllm.core.arms.ArmSet` and
minimise cost (lower is better), on the scale the controller's cost function produces. Every
policy derives from :class:`Policy`: five methods to define, and hooks with no-op defaults
that the controller calls directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

from camel_vllm.core.events import Arm, Context, EngineSnapshot, IterationWork, RequestOutcome


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
    for load, the requests in the engine) apply to its projections (1.0: none).
    ``clock_corrections``: (clock Hz, time factor, energy factor) per clock, from the board's own
    iterations (1.0: the model fits that clock). ``errors``:
    kind (energy, service) -> recent mean |log(measured / projected)| of finished requests.
    ``iterations``: kind (time, energy) -> iterations the board model has learned from.
    ``exploratory_decisions``: decisions where a posterior draw, not the posterior mean, chose.
    """

    corrections: Mapping[str, float]
    clock_corrections: tuple[tuple[float, float, float], ...]
    errors: Mapping[str, float]
    iterations: Mapping[str, float]
    exploratory_decisions: int = 0


class Policy(ABC):
    """A bandit over arm indices, with hooks for policies that learn from more than costs.

    ``select`` is called once per decision epoch with the indices of arms available now and
    the arm in force (``None`` before the first decision); it returns one of ``available``.
    ``observe`` credits ``cost`` to ``arm_index`` in ``context`` with ``weight`` in (0, 1]
    (a request served by several arms credits each with its share of tokens).
    ``estimates``, ``state_dict`` and ``load_state_dict`` give what the policy believes, for
    metrics and for the state file.

    The hooks (``observe_arrival`` ... ``maintain``) and ``model_readout`` and
    ``set_prior_means`` do nothing unless a policy overrides them; the controller calls the
    hooks as documented in :mod:`camel_vllm.control.controller`.
    """

    #: The name the policy is declared under (its module's ``DECLARATION``, which also says how
    #: the controller paces it: :class:`~camel_vllm.policies.declaration.Cadence`).
    name: str

    @abstractmethod
    def select(self, context: Context, available: Sequence[int], current: int | None) -> int: ...

    @abstractmethod
    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None: ...

    @abstractmethod
    def estimates(self) -> list[ArmEstimate]: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    # ------------------------------------------------------------------ hooks (no-op)
    def observe_arrival(self, now_s: float, prompt_tokens: int) -> None:  # noqa: B027 - a hook, a no-op by design
        """A request arrived."""

    def observe_snapshot(self, snapshot: EngineSnapshot) -> None:  # noqa: B027 - a hook, a no-op by design
        """The engine's state at a decision, just before ``select``."""

    def observe_iteration(self, arm_index: int, work: IterationWork, duration_s: float,  # noqa: B027 - a hook, a no-op by design
                          energy_j: float | None = None, *, freq_hz: float | None = None,
                          switched: bool = False) -> None:
        """An iteration that ran tokens ended (a step with none is not reported): its work, its
        duration (the emulated stretch included) and the device energy counted since the previous
        mark (``None``: not measured). When the clock follows the work
        (``Controller.per_step_clock``) the controller also says the clock the step ran at
        (``freq_hz``) and whether it was switched for it (``switched``: the step then includes the
        switch's latency)."""

    def step_frequency(self, work: IterationWork, arm: Arm, snapshot: EngineSnapshot | None = None) -> float | None:
        """The clock (Hz) a step doing ``work`` runs at under ``arm`` (``None``: leave the
        clock as it is); ``snapshot``: the engine when the step began. Called on every step only
        for a policy whose cadence says ``chooses_step_clock``; the default is the arm's own rule."""
        return arm.step_freq_hz(work)

    def observe_outcome(self, outcome: RequestOutcome) -> None:  # noqa: B027 - a hook, a no-op by design
        """A request finished (credited or not: see ``outcome.energy_measured``)."""

    def maintain(self) -> None:  # noqa: B027 - a hook, a no-op by design
        """Work the policy can do ahead of its next ``select``, between decisions."""

    def model_readout(self) -> ModelReadout | None:
        """What a model-based policy believes of its models (metrics); None: no models."""
        return None

    def set_prior_means(self, means: Sequence[float], strength: float) -> None:
        """Warm start: a prior mean cost per arm worth ``strength`` observations. Only policies
        whose beliefs take prior means (``camel-ts``, ``ts``) override this."""
        raise NotImplementedError(f"policy {self.name} takes no prior means")
