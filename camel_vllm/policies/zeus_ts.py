"""``zeus-ts``: the Gaussian Thompson sampling rule of Zeus's batch-size optimizer.

Rebuilt in our interface from the ``zeus`` 0.16.0 wheel (ml-energy/zeus, Apache-2.0),
``zeus/optimizer/batch_size/server/mab.py`` (class ``GaussianTS``: ``_fit_arm``,
``predict``, ``report``), with the defaults of ``zeus/optimizer/batch_size/common.py``
(``JobParams``: ``window_size`` 0, ``mab_prior_mean`` 0, ``mab_prior_precision`` 0,
``mab_num_explorations`` 2). The rule, per arm:

- the costs it fits are the arm's whole history (Zeus's default ``window_size=0``: "fetch all
  measurements"), or the last ``window`` of them for ``window > 0`` (``GaussianTS.report``
  fetches ``window_size`` results, drops the oldest when full and adds the new one);
- observation precision = 1 / population variance of those costs (``np.var``);
- posterior precision = prior precision (0) + n * observation precision; posterior mean =
  (prior precision * prior mean + observation precision * sum) / posterior precision; costs
  of zero variance give infinite precision and the sample is their mean, exactly as Zeus does;
- exploration first: arms, visited in a random order, with fewer than ``num_explorations``
  observations in their window are played before any sampling;
- then sample N(mean, 1 / precision) per arm and play the best draw (Zeus maximises the
  reward -cost; we minimise the cost, the same choice).

With ``window=0`` only each arm's count, sum and sum of squares are kept (the fit needs no
more), so memory and the saved state stay small however long the server runs. Zeus has no
notion of fractional credit or contexts: every credited observation enters whole and the
context is ignored. ``benchmarks/zeus_peer.py`` drives the real Zeus class on the bandit
benchmark's environments to check the figures.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.core.events import Context
from camel_vllm.policies.base import ArmEstimate, Policy
from camel_vllm.policies.decision import DecisionInput
from camel_vllm.policies.declaration import Param, PolicyDeclaration, integer
from camel_vllm.policies.state_values import BadStateValue, array, check_number, count, item

#: Zeus's defaults (zeus 0.16.0, zeus/optimizer/batch_size/common.py, ``JobParams``:
#: mab_prior_mean, mab_prior_precision, mab_num_explorations, window_size).
ZEUS_PRIOR_MEAN = 0.0
ZEUS_PRIOR_PRECISION = 0.0
ZEUS_NUM_EXPLORATIONS = 2
#: Costs per arm the fit uses: 0 = the whole history (Zeus's default ``window_size``).
ZEUS_WINDOW = 0
#: The window of the named variant ``zeus-ts-w10`` (camel-vllm's setting before it matched Zeus's default).
ZEUS_WINDOW_VARIANT = 10
#: Relative variance below which costs count as identical (zero variance, infinite precision):
#: running sums leave rounding residue where ``np.var`` of equal values gives exactly 0.
ZERO_VARIANCE_REL = 1e-12


def zeus_fit_arm(costs: Sequence[float], prior_mean: float = ZEUS_PRIOR_MEAN,
                 prior_precision: float = ZEUS_PRIOR_PRECISION) -> tuple[float, float]:
    """Zeus's ``_fit_arm`` on costs: (posterior mean, posterior precision) of the arm's mean."""
    rewards = np.asarray(costs, dtype=float)
    if rewards.size == 0:
        return prior_mean, prior_precision
    var = float(np.var(rewards))
    if var == 0.0:
        return float(rewards.mean()), math.inf
    obs_prec = 1.0 / var
    prec = prior_precision + rewards.size * obs_prec
    mean = (prior_precision * prior_mean + obs_prec * float(rewards.sum())) / prec
    return mean, prec


def fit_from_sums(count: float, total: float, total_sq: float) -> tuple[float, float]:
    """:func:`zeus_fit_arm` (prior precision 0) from count, sum and sum of squares of the costs."""
    if count <= 0:
        return ZEUS_PRIOR_MEAN, ZEUS_PRIOR_PRECISION
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    if var <= ZERO_VARIANCE_REL * max(1.0, mean * mean):
        return mean, math.inf
    return mean, count / var


class ZeusTSPolicy(Policy):
    name = "zeus-ts"

    def __init__(self, num_arms: int, rng: np.random.Generator, *, window: int = ZEUS_WINDOW,
                 num_explorations: int = ZEUS_NUM_EXPLORATIONS) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0 (0: all history), got {window}")
        self.num_arms = int(num_arms)
        self.rng = rng
        self.window = int(window)
        self.num_explorations = int(num_explorations)
        #: window > 0: the last ``window`` costs per arm (empty list for window 0).
        self.windows: list[deque[float]] = (
            [deque(maxlen=self.window) for _ in range(self.num_arms)] if self.window > 0 else [])
        #: window 0: count, sum and sum of squares of every cost per arm.
        self.sums = np.zeros((self.num_arms, 3))
        self.pulls = np.zeros(self.num_arms)

    def _sums(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(count, sum, sum of squares) of the fitted costs of arms ``idx``."""
        if self.window == 0:
            rows = self.sums[idx]
            return rows[:, 0], rows[:, 1], rows[:, 2]
        counts = np.fromiter((len(self.windows[a]) for a in idx), dtype=float, count=idx.size)
        sums = np.fromiter((sum(self.windows[a]) for a in idx), dtype=float, count=idx.size)
        sq = np.fromiter((sum(x * x for x in self.windows[a]) for a in idx), dtype=float, count=idx.size)
        return counts, sums, sq

    def select(self, decision: DecisionInput) -> int:
        available = decision.available
        if len(available) == 0:
            raise ValueError("select() needs at least one available arm")
        idx = np.asarray(available, dtype=np.intp)
        counts, sums, sq = self._sums(idx)
        if (counts < self.num_explorations).any():
            for pos in self.rng.permutation(idx.size):
                if counts[pos] < self.num_explorations:
                    return int(idx[pos])
        # Thompson phase, vectorised over arms; same numbers as zeus_fit_arm per arm.
        safe = np.maximum(counts, 1.0)
        mean = sums / safe
        var = np.maximum(sq / safe - mean * mean, 0.0)
        exact = var <= ZERO_VARIANCE_REL * np.maximum(1.0, mean * mean)  # zero variance: infinite precision
        std = np.sqrt(np.where(exact, 0.0, var / safe))  # 1/sqrt(n / var)
        draws = mean + std * self.rng.standard_normal(idx.size)
        return int(idx[np.argmin(draws)])

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        if math.isfinite(cost):
            if self.window == 0:
                self.sums[arm_index] += (1.0, cost, cost * cost)
            else:
                self.windows[arm_index].append(float(cost))
            self.pulls[arm_index] += weight

    def estimates(self) -> list[ArmEstimate]:
        out = []
        for arm in range(self.num_arms):
            mean, prec = fit_from_sums(*self.sums[arm]) if self.window == 0 else zeus_fit_arm(self.windows[arm])
            std = math.inf if prec == 0.0 else (0.0 if math.isinf(prec) else 1.0 / math.sqrt(prec))
            out.append(ArmEstimate(arm, None, float(self.pulls[arm]), float(mean), std))
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"kind": "zeus-ts", "num_arms": self.num_arms, "window": self.window,
                                 "pulls": self.pulls.tolist()}
        if self.window == 0:
            state["sums"] = self.sums.tolist()
        else:
            state["windows"] = [list(w) for w in self.windows]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state; a windowed state also loads into window 0 (its costs become the history).
        Every value is checked first (a failure names the field and changes nothing)."""
        if state.get("kind") != "zeus-ts":
            raise ValueError(f"state kind {state.get('kind')!r} is not zeus-ts")
        if count(state, "num_arms") != self.num_arms:
            raise BadStateValue("num_arms", f"= {state['num_arms']} but the policy has {self.num_arms} arms")
        pulls = array(item(state, "pulls"), "pulls", (self.num_arms,), low=0.0)
        windows: list[list[float]] | None = None
        if "windows" in state:
            raw = state["windows"]
            if not isinstance(raw, list) or len(raw) != self.num_arms:
                raise BadStateValue("windows", f"is not a list of {self.num_arms} lists of costs")
            windows = [array(w, f"windows[{a}]", (len(w) if isinstance(w, list) else 0,)).tolist()
                       for a, w in enumerate(raw)]
            sums = np.array([[len(w), sum(w), sum(x * x for x in w)] for w in windows], dtype=float)
            sums = sums.reshape(self.num_arms, 3)
        elif "sums" in state:
            if self.window != 0:
                raise ValueError(f"zeus-ts state holds all-history sums (window 0); it cannot fill a window of "
                                 f"{self.window}")
            sums = array(state["sums"], "sums", (self.num_arms, 3), low=None)
            for a, (n, total, total_sq) in enumerate(sums):
                check_number(n, f"sums[{a}, 0]", integer=True)
                check_number(total_sq, f"sums[{a}, 2]")
                if total * total > n * total_sq * (1.0 + 1e-9) + 1e-12:
                    raise BadStateValue(f"sums[{a}, 1]", f"= {float(total)!r} exceeds sqrt(count x sum of squares), "
                                                         "which no costs can")
        else:
            raise BadStateValue("sums", "is missing (and so is windows)")
        if windows is not None and self.window > 0:
            self.windows = [deque(w, maxlen=self.window) for w in windows]
        else:
            self.sums = sums
        self.pulls = pulls


DECLARATION = PolicyDeclaration(
    "zeus-ts", "Zeus's batch-size Gaussian Thompson sampling (ml-energy/zeus), on request costs",
    lambda i: ZeusTSPolicy(len(i.arms), i.rng, window=i.params["window"],
                           num_explorations=i.params["num_explorations"]),
    params=(Param("window", ZEUS_WINDOW, integer(minimum=0), "costs kept per arm (0: all history, Zeus's default)"),
            Param("num_explorations", ZEUS_NUM_EXPLORATIONS, integer(minimum=0), "pulls of each arm before sampling")),
    listing=8,
)
