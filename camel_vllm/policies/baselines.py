"""The baselines Camel is compared with, behind the same :class:`Policy` protocol.

All of them are non-contextual (they ignore ``context.id``) and keep weighted empirical
statistics per arm (a weighted observation counts as ``weight`` pulls). Every ``select``
returns one of ``available``.

- ``default``: the highest available frequency with the largest batch cap (Camel's baseline).
- ``static``: one configured arm (the nearest available arm if it is switched off).
- ``grid``: play each arm until it has ``k`` observations' weight, then commit to the
  lowest empirical mean (Camel's grid-search baseline).
- ``ucb``: UCB1 (Auer et al. 2002) for costs, index = mean - c * s * sqrt(2 ln t / n);
  costs are not bounded in [0, 1], so the bonus is scaled by s, the pooled within-arm
  standard deviation (1 before two observations of an arm).
- ``epsilon``: epsilon-greedy: each untried arm once, then a uniformly random available arm
  with probability epsilon, else the lowest empirical mean.
- ``oracle``: told the true mean costs (simulation only); plays the best available arm.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.core.arms import ArmSet, same_frequency
from camel_vllm.core.config import ConfigError
from camel_vllm.core.events import Context
from camel_vllm.policies.base import ArmEstimate, Policy
from camel_vllm.policies.decision import DecisionInput
from camel_vllm.policies.declaration import BuildInputs, Param, PolicyDeclaration, anything, number
from camel_vllm.policies.state_values import BadStateValue, count, item, under
from camel_vllm.policies.thompson.nig import SufficientStats


class EmpiricalPolicy(Policy):
    """Shared bookkeeping: weighted count, mean and sum of squares per arm."""

    name = "empirical"

    def __init__(self, num_arms: int, rng: np.random.Generator) -> None:
        self.num_arms = int(num_arms)
        self.rng = rng
        self.stats = SufficientStats((self.num_arms,))

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        if math.isfinite(cost):
            self.stats.update(arm_index, float(cost), float(weight))

    def estimates(self) -> list[ArmEstimate]:
        n, xbar = self.stats.n, self.stats.xbar
        var = np.where(n > 1, self.stats.m2 / np.maximum(n - 1, 1e-12), np.inf)
        std = np.sqrt(var / np.maximum(n, 1e-12))
        return [ArmEstimate(a, None, float(n[a]), float(xbar[a]), float(std[a])) for a in range(self.num_arms)]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "empirical", "num_arms": self.num_arms, "stats": self.stats.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state after checking every value (a failure names the field and changes nothing)."""
        if state.get("kind") != "empirical":
            raise ValueError(f"state kind {state.get('kind')!r} is not empirical")
        if count(state, "num_arms") != self.num_arms:
            raise BadStateValue("num_arms", f"= {state['num_arms']} but the policy has {self.num_arms} arms")
        stats = SufficientStats((self.num_arms,))
        with under("stats"):
            stats.load(item(state, "stats"))
        self.stats = stats

    def _best_mean(self, idx: np.ndarray) -> int:
        tried = idx[self.stats.n[idx] > 0]
        if tried.size == 0:
            return int(idx[0])
        return int(tried[np.argmin(self.stats.xbar[tried])])


class DefaultPolicy(EmpiricalPolicy):
    name = "default"

    def __init__(self, arms: ArmSet, rng: np.random.Generator) -> None:
        super().__init__(len(arms), rng)
        self._order = sorted(
            range(len(arms)),
            key=lambda i: (-1.0 if arms[i].freq_hz is None else arms[i].freq_hz, arms[i].max_batch),
        )

    def select(self, decision: DecisionInput) -> int:
        available = decision.available
        allowed = set(available)
        for i in reversed(self._order):
            if i in allowed:
                return i
        raise ValueError("select() needs at least one available arm")


class StaticPolicy(EmpiricalPolicy):
    """Always ``arm``; if it is unavailable, the available arm with the same batch cap and
    the nearest frequency (then the nearest batch cap)."""

    name = "static"

    def __init__(self, arms: ArmSet, arm_index: int, rng: np.random.Generator) -> None:
        super().__init__(len(arms), rng)
        self.arms = arms
        self.arm_index = arm_index

    def select(self, decision: DecisionInput) -> int:
        available = decision.available
        if self.arm_index in available:
            return self.arm_index
        want = self.arms[self.arm_index]

        def distance(i: int) -> tuple[float, float]:
            arm = self.arms[i]
            df = 0.0 if arm.freq_hz == want.freq_hz else abs((arm.freq_hz or 0.0) - (want.freq_hz or 0.0))
            return (abs(arm.max_batch - want.max_batch), df)

        return min(available, key=distance)


class GridPolicy(EmpiricalPolicy):
    name = "grid"

    def __init__(self, num_arms: int, k: float, rng: np.random.Generator) -> None:
        super().__init__(num_arms, rng)
        if not k > 0:
            raise ValueError(f"grid k must be > 0, got {k}")
        self.k = float(k)

    def select(self, decision: DecisionInput) -> int:
        available, current = decision.available, decision.current
        idx = np.asarray(available, dtype=np.intp)
        todo = idx[self.stats.n[idx] < self.k]
        if todo.size:
            if current is not None and current in todo:
                return int(current)  # finish the arm in progress before moving on
            return int(todo[0])
        return self._best_mean(idx)


class UCBPolicy(EmpiricalPolicy):
    name = "ucb"

    def __init__(self, num_arms: int, c: float, rng: np.random.Generator) -> None:
        super().__init__(num_arms, rng)
        self.c = float(c)

    def select(self, decision: DecisionInput) -> int:
        available = decision.available
        idx = np.asarray(available, dtype=np.intp)
        n = self.stats.n[idx]
        untried = idx[n <= 0]
        if untried.size:
            return int(untried[0])
        dof = np.maximum(self.stats.n - 1.0, 0.0).sum()
        scale = math.sqrt(self.stats.m2.sum() / dof) if dof >= 1.0 else 1.0
        t = max(self.stats.n.sum(), 1.0)
        index = self.stats.xbar[idx] - self.c * scale * np.sqrt(2.0 * math.log(t) / n)
        return int(idx[np.argmin(index)])


class EpsilonGreedyPolicy(EmpiricalPolicy):
    name = "epsilon"

    def __init__(self, num_arms: int, epsilon: float, rng: np.random.Generator) -> None:
        super().__init__(num_arms, rng)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)

    def select(self, decision: DecisionInput) -> int:
        available = decision.available
        idx = np.asarray(available, dtype=np.intp)
        untried = idx[self.stats.n[idx] <= 0]
        if untried.size:
            return int(untried[0])
        if self.rng.random() < self.epsilon:
            return int(idx[self.rng.integers(idx.size)])
        return self._best_mean(idx)


class OraclePolicy(EmpiricalPolicy):
    """Plays argmin of the true mean costs among available arms.

    ``true_mean_costs`` is one cost per arm, or one row per context (then the row of the
    decision's context is used).
    """

    name = "oracle"

    def __init__(self, num_arms: int, true_mean_costs: Sequence[Any] | np.ndarray, rng: np.random.Generator) -> None:
        super().__init__(num_arms, rng)
        table = np.asarray(true_mean_costs, dtype=float)
        if table.ndim == 1:
            table = table[None, :]
        if table.ndim != 2 or table.shape[1] != self.num_arms:
            raise ValueError(f"true_mean_costs must have {self.num_arms} entries per row, got shape {table.shape}")
        self.table = table

    def select(self, decision: DecisionInput) -> int:
        context, available = decision.context, decision.available
        idx = np.asarray(available, dtype=np.intp)
        row = self.table[min(int(context.id), self.table.shape[0] - 1)]
        return int(idx[np.argmin(row[idx])])


# ------------------------------------------------------------------ declarations
def static_prefill_mhz(spec: Any) -> float | None:
    """The prefill clock (MHz) a static arm ``[MHZ, BATCH, PREFILL_MHZ]`` names (None: none)."""
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and isinstance(spec[2], (int, float)) \
            and not isinstance(spec[2], bool):
        return float(spec[2])
    return None


def static_arm(arms: ArmSet, spec: Any) -> int:
    """Index of the arm ``[MHZ, BATCH]`` (or ``[MHZ, BATCH, PREFILL_MHZ]``: prefill steps at that
    clock) names; ConfigError naming policy_params.arm if absent."""
    offered = ", ".join(a.label for a in arms.arms)
    if not isinstance(spec, (list, tuple)) or len(spec) not in (2, 3):
        raise ConfigError("policy_params.arm", spec, 'static needs arm: [MHZ, BATCH] (MHZ may be "auto") or '
                                                     "[MHZ, BATCH, PREFILL_MHZ]")
    mhz, batch = spec[0], spec[1]
    prefill = static_prefill_mhz(spec)
    if len(spec) == 3 and prefill is None:
        raise ConfigError("policy_params.arm", list(spec), "PREFILL_MHZ must be a number")
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise ConfigError("policy_params.arm", list(spec), "BATCH must be an integer")

    def same(freq_hz: float | None, value: Any) -> bool:
        if freq_hz is None or value in (None, "auto"):
            return freq_hz is None and value in (None, "auto")
        return isinstance(value, (int, float)) and not isinstance(value, bool) and same_frequency(freq_hz, value * 1e6)

    if prefill is not None and isinstance(mhz, (int, float)) and not isinstance(mhz, bool) \
            and same_frequency(mhz * 1e6, prefill * 1e6):
        prefill = None  # prefill at the arm's own clock: the plain arm
    for i, arm in enumerate(arms.arms):
        if arm.max_batch != batch or not same(arm.freq_hz, mhz):
            continue
        if (prefill is None and arm.prefill_freq_hz is None) or (
                prefill is not None and arm.prefill_freq_hz is not None and same(arm.prefill_freq_hz, prefill)):
            return i
    raise ConfigError("policy_params.arm", list(spec), f"not in the arm set (arms: {offered})")


def _static_prefill_clocks(params: Mapping[str, Any], clocks_hz: Sequence[float]) -> list[float]:
    prefill = static_prefill_mhz(params.get("arm"))
    if prefill is None:
        return []
    match = min(clocks_hz, key=lambda f: abs(f - prefill * 1e6))
    return [match] if same_frequency(match, prefill * 1e6) else []


def _oracle(inputs: BuildInputs) -> Policy:
    raise ConfigError("policy", "oracle", "oracle needs the true mean costs (simulation only)")


DECLARATIONS = (
    PolicyDeclaration("default", "the highest clock and the largest batch cap: vLLM left alone (Camel's baseline)",
                      lambda i: DefaultPolicy(i.arms, i.rng), listing=3),
    PolicyDeclaration("static", "one configured arm",
                      lambda i: StaticPolicy(i.arms, static_arm(i.arms, i.params["arm"]), i.rng),
                      params=(Param("arm", None, anything, '[MHZ, BATCH] (MHZ may be "auto") or [MHZ, BATCH, '
                                                          "PREFILL_MHZ]: prefill steps at that clock"),),
                      prefill_clocks=_static_prefill_clocks, listing=4),
    PolicyDeclaration("grid", "each arm k observations, then the best (Camel's grid-search baseline)",
                      lambda i: GridPolicy(len(i.arms), i.params["k"], i.rng),
                      params=(Param("k", 10.0, number(positive=True), "observations per arm before committing"),),
                      listing=5),
    PolicyDeclaration("ucb", "UCB1 on request costs", lambda i: UCBPolicy(len(i.arms), i.params["c"], i.rng),
                      params=(Param("c", 1.0, number(non_negative=True), "bonus multiplier"),), listing=6),
    PolicyDeclaration("epsilon", "epsilon-greedy on request costs",
                      lambda i: EpsilonGreedyPolicy(len(i.arms), i.params["epsilon"], i.rng),
                      params=(Param("epsilon", 0.1, number(non_negative=True, maximum=1.0),
                                    "probability of a random arm"),), listing=7),
    PolicyDeclaration("oracle", "the best static arm in hindsight (simulation only)", _oracle, simulation_only=True,
                      listing=9),
)
