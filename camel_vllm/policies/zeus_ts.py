"""``zeus-ts``: the Gaussian Thompson sampling rule of Zeus's batch-size optimizer.

Rebuilt in our interface from ml-energy/zeus, ``zeus/optimizer/batch_size/server/mab.py``
(class ``GaussianTS``: ``fit_arm``, ``predict``, ``report``; defaults from
``zeus/optimizer/batch_size/common.py``: ``mab_prior_mean`` 0, ``mab_prior_precision`` 0,
``mab_num_explorations`` 2). The rule, per arm:

- keep the last ``window`` costs (Zeus: ``window_size``; we use 10 as the issue specifies);
- observation precision = 1 / population variance of that window (``np.var``);
- posterior precision = prior precision (0) + n * observation precision; posterior mean =
  (prior precision * prior mean + observation precision * sum) / posterior precision; a
  window of identical costs (zero variance) gives infinite precision and the sample is the
  window mean, exactly as Zeus does;
- exploration first: arms, visited in a random order, with fewer than ``num_explorations``
  observations in their window are played before any sampling;
- then sample N(mean, 1 / precision) per arm and play the best draw (Zeus maximises the
  reward -cost; we minimise the cost, the same choice).

Zeus has no notion of fractional credit or contexts: every credited observation enters the
window whole and the context is ignored.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.policies.base import ArmEstimate
from camel_vllm.types import Context

#: Zeus's defaults (zeus/optimizer/batch_size/common.py: mab_prior_precision, mab_num_explorations).
ZEUS_PRIOR_MEAN = 0.0
ZEUS_PRIOR_PRECISION = 0.0
ZEUS_NUM_EXPLORATIONS = 2
#: Window of recent costs per arm (the issue's setting for the comparison).
ZEUS_WINDOW = 10


def zeus_fit_arm(costs: Sequence[float], prior_mean: float = ZEUS_PRIOR_MEAN,
                 prior_precision: float = ZEUS_PRIOR_PRECISION) -> tuple[float, float]:
    """Zeus's ``fit_arm`` on costs: (posterior mean, posterior precision) of the arm's mean."""
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


class ZeusTSPolicy:
    name = "zeus-ts"

    def __init__(self, num_arms: int, rng: np.random.Generator, *, window: int = ZEUS_WINDOW,
                 num_explorations: int = ZEUS_NUM_EXPLORATIONS) -> None:
        self.num_arms = int(num_arms)
        self.rng = rng
        self.window = int(window)
        self.num_explorations = int(num_explorations)
        self.windows: list[deque[float]] = [deque(maxlen=self.window) for _ in range(self.num_arms)]
        self.pulls = np.zeros(self.num_arms)

    def select(self, context: Context, available: Sequence[int], current: int | None) -> int:
        if len(available) == 0:
            raise ValueError("select() needs at least one available arm")
        idx = np.asarray(available, dtype=np.intp)
        counts = np.fromiter((len(self.windows[a]) for a in idx), dtype=float, count=idx.size)
        if (counts < self.num_explorations).any():
            for arm in self.rng.permutation(idx):
                if len(self.windows[arm]) < self.num_explorations:
                    return int(arm)
        # Thompson phase, vectorised over arms; same numbers as zeus_fit_arm per arm.
        sums = np.fromiter((sum(self.windows[a]) for a in idx), dtype=float, count=idx.size)
        sq = np.fromiter((sum(x * x for x in self.windows[a]) for a in idx), dtype=float, count=idx.size)
        safe = np.maximum(counts, 1.0)
        mean = sums / safe
        var = np.maximum(sq / safe - mean * mean, 0.0)
        exact = var <= 1e-12 * np.maximum(1.0, mean * mean)  # zero variance: infinite precision
        std = np.sqrt(np.where(exact, 0.0, var / safe))  # 1/sqrt(n / var)
        draws = mean + std * self.rng.standard_normal(idx.size)
        return int(idx[np.argmin(draws)])

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        if math.isfinite(cost):
            self.windows[arm_index].append(float(cost))
            self.pulls[arm_index] += weight

    def estimates(self) -> list[ArmEstimate]:
        out = []
        for arm, window in enumerate(self.windows):
            mean, prec = zeus_fit_arm(window)
            std = math.inf if prec == 0.0 else (0.0 if math.isinf(prec) else 1.0 / math.sqrt(prec))
            out.append(ArmEstimate(arm, None, float(self.pulls[arm]), float(mean), std))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "zeus-ts",
            "num_arms": self.num_arms,
            "windows": [list(w) for w in self.windows],
            "pulls": self.pulls.tolist(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != "zeus-ts" or int(state["num_arms"]) != self.num_arms:
            raise ValueError(f"state is not a zeus-ts state for {self.num_arms} arms")
        windows = [deque((float(x) for x in w), maxlen=self.window) for w in state["windows"]]
        pulls = np.asarray(state["pulls"], dtype=float)
        if len(windows) != self.num_arms or pulls.shape != (self.num_arms,):
            raise ValueError("zeus-ts state does not match the number of arms")
        self.windows, self.pulls = windows, pulls
