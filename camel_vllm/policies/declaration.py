"""What a policy declares about itself, once: its name, its parameters, how the controller paces it
and how it is built.

A policy module ends with ``DECLARATION = PolicyDeclaration(...)`` (or ``DECLARATIONS = (...)``
for several); :mod:`camel_vllm.policies.registry` finds every declaration in the package, and the
config check, ``make_policy``, ``bench`` and the docs read them. Adding a policy is one new module
(and its tests). Parameter checks raise :class:`~camel_vllm.core.config.ConfigError` naming
``policy_params.KEY`` in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from camel_vllm.core.config import ConfigError

if TYPE_CHECKING:
    from camel_vllm.core.arms import ArmSet
    from camel_vllm.core.config import CamelConfig
    from camel_vllm.policies.base import Policy


@dataclass(frozen=True)
class Cadence:
    """How the controller paces a policy: the controller owns time, a policy only declares this.

    ``epoch_s``: seconds an arm is held when the configuration leaves ``epoch_s`` unset (0: no
    time bound); ``decide_on_demand_growth``: also decide when the requests in the engine have
    doubled (``Controller.decision_due``); ``maintain_each_iteration``: ``maintain`` on every
    iteration between decisions, not only the last few; ``chooses_step_clock``: the controller
    asks ``step_frequency`` for every step's clock.
    """

    epoch_s: float = 0.0
    decide_on_demand_growth: bool = False
    maintain_each_iteration: bool = False
    chooses_step_clock: bool = False


@dataclass(frozen=True)
class Param:
    """One ``policy_params`` key: its default, its check (returns the value to use or raises a
    ConfigError) and one line of documentation."""

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    doc: str


@dataclass(frozen=True)
class BuildInputs:
    """What a policy's factory gets: the configuration, the arms, its checked parameters, its
    seeded random generator and the engine and device facts some policies use."""

    config: CamelConfig
    arms: ArmSet
    params: Mapping[str, Any]
    rng: np.random.Generator
    num_contexts: int
    token_budget: int | None = None
    switch_latency_s: float = 0.0
    #: Builds another declared policy over the same arms (``slo`` wraps one): name, raw params.
    make_inner: Callable[[str, Mapping[str, Any]], Policy] | None = None


@dataclass(frozen=True)
class PolicyDeclaration:
    """A policy as the rest of camel-vllm knows it (see the module docstring).

    ``removed``: parameters that were removed, with the value that behaves as before (still
    accepted) and why (any other value is refused); ``prefill_clocks``: which clocks (Hz) the
    arm set runs prefill steps at for this policy (``ArmSet.product``), given its parameters
    and the clocks; ``simulation_only``: never built from a configuration (``oracle``);
    ``listing``: position in listings (config errors, ``--help``); ``wraps_inner``: see below.
    """

    name: str
    summary: str
    build: Callable[[BuildInputs], Policy]
    params: tuple[Param, ...] = ()
    cadence: Cadence = Cadence()
    removed: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    prefill_clocks: Callable[[Mapping[str, Any], Sequence[float]], list[float]] | None = None
    simulation_only: bool = False
    #: Takes ``policy_params.inner`` (another declared policy, or none) and passes that policy its
    #: own parameters; paced as that policy is (``slo``).
    wraps_inner: bool = False
    listing: int = 100

    @property
    def param_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


# ----------------------------------------------------------------------- checks
def number(*, positive: bool = False, non_negative: bool = False, maximum: float | None = None,
           ) -> Callable[[str, Any], float]:
    """A finite number (``> 0``, ``>= 0``, ``<= maximum`` as asked)."""

    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ConfigError(f"policy_params.{key}", value, "must be a number")
        if positive and value <= 0:
            raise ConfigError(f"policy_params.{key}", value, "must be > 0")
        if non_negative and value < 0:
            raise ConfigError(f"policy_params.{key}", value, "must be >= 0")
        if maximum is not None and value > maximum:
            raise ConfigError(f"policy_params.{key}", float(value), f"must be in [0, {maximum:g}]")
        return float(value)

    return check


def integer(*, minimum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"policy_params.{key}", value, f"must be an integer >= {minimum}")
        return value

    return check


def flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"policy_params.{key}", value, "must be true or false")
    return value


def choice(*options: str, quoted: bool = False) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in options:
            listing = " or ".join(f'"{o}"' for o in options) if quoted else ", ".join(options)
            raise ConfigError(f"policy_params.{key}", value,
                              f"must be {listing}" if quoted else f"must be one of {listing}")
        return value

    return check


def seconds_or_none(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ConfigError(f"policy_params.{key}", value, "must be a positive number of seconds")
    return float(value)


def anything(key: str, value: Any) -> Any:
    """Checked by the factory (it needs the arms, e.g. ``static``'s ``arm``)."""
    return value
