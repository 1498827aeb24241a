"""Change detection for ``camel-ts``: a two-sided CUSUM per context on cost residuals.

A context's costs can shift under it (the load inside one load bucket moves, the workload
changes). Each observation's residual against its cell's mean, standardised by the pooled
noise, feeds the context's CUSUM (Page 1954); on an alarm the policy forgets the context's
statistics and relearns it from its prior: the monitored-bandit rule of Cao et al. (AISTATS
2019). docs/policies.md has the choice of threshold and drift.
"""

from __future__ import annotations

import math

import numpy as np

#: Standardised residuals are clipped to +-this before they enter the change detector, so
#: one heavy-tailed cost (a request that waited behind a burst) cannot raise an alarm alone:
#: an alarm at h = 10 needs at least 3 consecutive extreme residuals.
CHANGE_RESIDUAL_CLIP = 4.0
#: A cell's residuals enter the change detector once it holds this many observations
#: (before that its own mean is too uncertain to be contradicted).
CHANGE_MIN_CELL_N = 3.0


class ChangeDetector:
    """Two-sided CUSUM sums per context row: alarm level ``threshold`` (h), allowance
    ``drift`` (k, noise units per observation: only residuals beyond it count)."""

    def __init__(self, rows: int, *, threshold: float, drift: float) -> None:
        self.threshold = threshold
        self.drift = drift
        self.sums = np.zeros((rows, 2))  # per context row: (upward, downward)

    def grow(self, rows: int) -> None:
        """Make room for context rows up to ``rows`` - 1."""
        self.sums = np.vstack([self.sums, np.zeros((rows - self.sums.shape[0], 2))])

    def reset(self, row: int) -> None:
        self.sums[row] = 0.0

    def observe(self, row: int, cell_n: float, cell_mean: float, cost: float, weight: float, *,
                m2_cells: float, dof: float) -> bool:
        """Feed one observation to context ``row``'s CUSUM; True on an alarm.

        The residual is the cost against its cell's mean (``cell_n`` observations, mean
        ``cell_mean``), standardised by the pooled noise (``m2_cells`` / ``dof``: within-cell
        spread over all cells) and the mean's own uncertainty: z = (x - xbar) / (sigma
        sqrt(1 + 1/n)), clipped to +-CHANGE_RESIDUAL_CLIP. Both one-sided sums move by
        ``weight`` (z - k) and alarm above h.
        """
        if cell_n < CHANGE_MIN_CELL_N or dof < 1.0 or m2_cells <= 0.0:
            return False
        sigma = math.sqrt(m2_cells / dof * (1.0 + 1.0 / cell_n))
        z = (cost - cell_mean) / sigma
        z = min(CHANGE_RESIDUAL_CLIP, max(-CHANGE_RESIDUAL_CLIP, z))
        k = self.drift
        sums = self.sums[row]
        sums[0] = max(0.0, sums[0] + weight * (z - k))
        sums[1] = max(0.0, sums[1] + weight * (-z - k))
        return bool(sums.max() > self.threshold)
