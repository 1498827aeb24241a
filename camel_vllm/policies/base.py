"""The policy base class: choose an arm in a context, learn from costs, and the optional hooks.

Policies address arms by index into the controller's :class:`~camel_vllm.core.arms.ArmSet` and
minimise cost (lower is better), on the scale the controller's cost function produces. Every
policy derives from :class:`Policy`: five methods to define, and hooks with no-op defaults
that the controller calls directly. What a decision is made from is in
:mod:`camel_vllm.policies.decision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from camel_vllm.core.events import Arm, Context, EngineSnapshot, IterationWork, RequestOutcome
from camel_vllm.policies.decision import Deadline, DecisionInput
from camel_vllm.policies.workload import WorkloadEstimator

if TYPE_CHECKING:
    from camel_vllm.policies.model_based.board import BoardModel


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
    """The contract between the controller and a policy: a bandit over arm indices, with hooks
    for policies that learn from more than costs.

    The controller owns time, load and cost: it decides when an epoch ends, builds one
    :class:`~camel_vllm.policies.decision.DecisionInput` per decision and computes every
    request's cost; a policy owns its model and its choice. Each hook is called on the engine
    thread, in this order over a request's life (docs/controller.md):

    - :meth:`observe_arrival` when a request arrives;
    - :meth:`select` at each decision (the first engine step of an epoch);
    - :meth:`maintain` on steps between decisions, with the :class:`~camel_vllm.policies.
      decision.Deadline` of the next (every step for a cadence that asks, else the last few);
    - :meth:`step_frequency` as a step's batch is formed (only for a cadence that
      ``chooses_step_clock``);
    - :meth:`observe_iteration` when a step that ran tokens ends;
    - :meth:`observe` (the request's cost, per arm that served it) and then
      :meth:`observe_outcome` when a request finishes.

    ``estimates`` and ``model_readout`` are read on the engine thread, at the step after a
    metrics reader asked, as the engine drains and at close (the metrics read those copies,
    never the policy: :mod:`camel_vllm.control.snapshots`); ``state_dict`` and ``load_state_dict`` give
    the state file. A hook that raises makes the controller play the default arm from then on
    (:class:`~camel_vllm.control.controller.DefaultArmPolicy`). Policies declare themselves once
    (:mod:`camel_vllm.policies.declaration`).
    """

    #: The name the policy is declared under (its module's ``DECLARATION``, which also says how
    #: the controller paces it: :class:`~camel_vllm.policies.declaration.Cadence`).
    name: str
    #: The workload estimate the policy reads and keeps in its state (``None``: it reads none).
    #: The controller feeds it (arrivals, the running requests at each decision, prefill chunks,
    #: finished requests) and hands it in every :class:`~camel_vllm.policies.decision.
    #: DecisionInput`: there is one estimate of the load, and no policy feeds it. A policy that
    #: reads none gets none, and the controller spends nothing on one (~6 us a request).
    workload: WorkloadEstimator | None = None
    #: The model of step time and energy against clock and work the policy learns from every
    #: step (``None``: it learns none). A policy that wraps it reads this one rather than
    #: learning a second from the same steps (``slo`` around camel).
    board: BoardModel | None = None

    @abstractmethod
    def select(self, decision: DecisionInput) -> int:
        """The arm to play for the next epoch: one of ``decision.available``."""

    @abstractmethod
    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        """Credit ``cost`` (the controller's cost of a finished request; lower is better) to
        ``arm_index`` in ``context`` with ``weight`` in (0, 1]: a request served by several
        arms credits each with its share of tokens."""

    @abstractmethod
    def estimates(self) -> list[ArmEstimate]:
        """What the policy believes of each arm, on its cost scale (for metrics and logs)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The learned state, JSON-serialisable (written atomically by the controller)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state from :meth:`state_dict`; refuse a bad one without changing anything."""

    # ------------------------------------------------------------------ hooks (no-op)
    def observe_arrival(self, now_s: float, prompt_tokens: int) -> None:  # noqa: B027 - a hook, a no-op by design
        """A request arrived."""

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

    def maintain(self, deadline: Deadline) -> None:  # noqa: B027 - a hook, a no-op by design
        """Work the policy can do ahead of its next ``select``, between decisions; ``deadline``
        says how far off that decision is."""

    def model_readout(self) -> ModelReadout | None:
        """What a model-based policy believes of its models (metrics); None: no models."""
        return None

    def set_prior_means(self, means: Sequence[float], strength: float) -> None:
        """Warm start: a prior mean cost per arm worth ``strength`` observations. Only policies
        whose beliefs take prior means (``camel-ts``, ``ts``) override this."""
        raise NotImplementedError(f"policy {self.name} takes no prior means")
