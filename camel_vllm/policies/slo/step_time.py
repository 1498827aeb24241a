"""An online model of one engine iteration's duration versus GPU frequency and work.

throttLL'eM (arXiv 2408.05235) predicts iteration speed from (frequency, batch size, KV use)
with a gradient-boosted model trained offline. We have no offline profile of the user's
board, so the model is learnt online, by recursive least squares, in a form with few
parameters that extrapolates safely to frequencies not yet tried:

    t(f, P, D, C) = sum over x in (1, P, D, C) of  x * (m_x + c_x * s),    s = f_max / f

with P prefill tokens, D decode tokens (requests decoding), C context tokens read by
attention, all per iteration. Each term is a memory-bound part ``m_x`` (independent of the
clock) plus a compute-bound part ``c_x * s`` (proportional to cycles / frequency): the
roofline's two regimes (decode nearly flat above ~714 MHz, prefill about linear in 1/f on
Orin; docs/devices.md), summed rather than maxed so the model stays linear.

Before the data separates the two parts (only one frequency seen), the ridge penalty on the
memory-bound coefficients is 1000x that on the compute-bound ones, so an unidentified time
is attributed to compute, whose projection to a lower clock is the pessimistic one (the
SLO stays safe while the model is ignorant). Old data is forgotten with factor
``forgetting`` per iteration (an effective memory of 1 / (1 - forgetting) iterations), so
the model follows thermal or power-mode drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from camel_vllm.policies.state_values import array, check_statistics, count, item

#: Feature scales (tokens), so that coefficients are of similar size: a prefill chunk is up
#: to a few thousand tokens, a decode batch tens of requests, context up to ~1e5 tokens.
PREFILL_SCALE = 1000.0
DECODE_SCALE = 10.0
CONTEXT_SCALE = 10_000.0
#: Ridge penalties (in units of one scaled observation): memory-bound parts vs compute parts.
RIDGE_MEMORY = 0.1
RIDGE_COMPUTE = 1e-4
#: Never project an iteration shorter than this (s): a sanity floor for a fresh model.
MIN_ITERATION_S = 1e-4

NUM_FEATURES = 8


@dataclass(frozen=True)
class IterationLoad:
    """The work of one (real or projected) iteration, in tokens."""

    prefill_tokens: float
    decode_tokens: float
    context_tokens: float


class IterationTimeModel:
    """Recursive least squares of iteration duration (s) on the 8 roofline features."""

    def __init__(self, max_freq_hz: float | None, *, forgetting: float = 0.999) -> None:
        if not 0.0 < forgetting <= 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {forgetting}")
        self.max_freq_hz = max_freq_hz
        self.forgetting = forgetting
        self.observations = 0
        self._a = np.zeros((NUM_FEATURES, NUM_FEATURES))
        self._b = np.zeros(NUM_FEATURES)
        penalty = [RIDGE_MEMORY if j % 2 == 0 else RIDGE_COMPUTE for j in range(NUM_FEATURES)]
        self._ridge = np.diag(penalty)
        self._coef: np.ndarray | None = None
        self.frequencies_seen: set[float | None] = set()

    def features(self, freq_hz: float | None, load: IterationLoad) -> np.ndarray:
        s = 1.0 if freq_hz is None or not self.max_freq_hz else self.max_freq_hz / freq_hz
        p = load.prefill_tokens / PREFILL_SCALE
        d = load.decode_tokens / DECODE_SCALE
        c = load.context_tokens / CONTEXT_SCALE
        return np.array([1.0, s, p, p * s, d, d * s, c, c * s])

    def observe(self, freq_hz: float | None, load: IterationLoad, duration_s: float) -> None:
        """Add one measured iteration (cheap: a rank-one update, no solve)."""
        if not np.isfinite(duration_s) or duration_s <= 0.0:
            return
        x = self.features(freq_hz, load)
        lam = self.forgetting
        self._a *= lam
        self._b *= lam
        self._a += np.outer(x, x)
        self._b += x * duration_s
        self._coef = None
        self.observations += 1
        self.frequencies_seen.add(freq_hz)

    @property
    def coef(self) -> np.ndarray:
        if self._coef is None:
            self._coef = np.linalg.solve(self._a + self._ridge, self._b)
        return self._coef

    def predict_s(self, freq_hz: float | None, load: IterationLoad) -> float:
        """Projected duration of an iteration doing ``load`` at ``freq_hz`` (s)."""
        return max(MIN_ITERATION_S, float(self.features(freq_hz, load) @ self.coef))

    def state_dict(self) -> dict[str, Any]:
        return {"a": self._a.tolist(), "b": self._b.tolist(), "observations": self.observations}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state after checking it (a failure names the field and changes nothing):
        ``a`` a symmetric positive semi-definite sum of x x', both finite and of this shape."""
        a = array(item(state, "a"), "a", (NUM_FEATURES, NUM_FEATURES))
        b = array(item(state, "b"), "b", (NUM_FEATURES,))
        check_statistics(a, b, None, names=("a", "b"))
        observations = count(state, "observations", default=0)
        self._a, self._b = a, b
        self.observations = observations
        self._coef = None
