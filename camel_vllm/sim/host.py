"""The live engine's own time per step, which the modelled step does not include.

Under ``emulation_time: absolute`` the camel scheduler waits out each step's modelled time, so
a live step lasts ``max(modelled, the engine's own time)``: where the engine's work (forward
pass on the CPU, scheduling, sampling) outlasts the model, the step is longer than the model
says. After the wait come the sleep's overshoot and the rest of the step's output processing
(the *tail*), and between steps the engine's loop (the *gap*), the device idle. None of it is
steady: a step now and then takes milliseconds more. The simulator has none of this unless
given a :class:`HostTime`, measured from a live run's iteration log
(``CAMEL_VLLM_ITERATION_LOG``) by :func:`fit_host_time`: the own time as a linear fit in the
step's tokens, tails and gaps as measured quantiles drawn per step from a seeded generator.
The default (nothing measured) is the simulator's own engine: steps take exactly the modelled
time, back to back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import nnls

from camel_vllm.core.events import IterationWork

#: Gaps between steps longer than this (s) are the engine idle, waiting for a request, not its loop.
BUSY_GAP_MAX_S = 0.05
#: Quantiles kept of each measured distribution (drawn uniformly: a bootstrap from them).
QUANTILES = 50


@dataclass(frozen=True)
class HostTime:
    """The engine's own time per step (s), fitted apart for steps that prefill and for decode-only
    steps: ``step_s + per_prefill_token_s x prefill tokens + per_decode_token_s x decode tokens``
    (the ``decode_`` fields for decode-only steps); then a draw of ``tails_s`` before the step's
    tokens are out, and of ``gaps_s`` before the next step begins."""

    step_s: float = 0.0
    per_prefill_token_s: float = 0.0
    per_decode_token_s: float = 0.0
    decode_step_s: float = 0.0
    decode_per_token_s: float = 0.0
    tails_s: tuple[float, ...] = ()
    gaps_s: tuple[float, ...] = ()
    #: Live steps the figures were measured on (0: nothing measured).
    steps: int = 0

    def __post_init__(self) -> None:
        for name in ("step_s", "per_prefill_token_s", "per_decode_token_s", "decode_step_s", "decode_per_token_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f"host time: {name} must be a finite number >= 0, got {value!r}")
        for name in ("tails_s", "gaps_s"):
            values = getattr(self, name)
            if any(not math.isfinite(v) or v < 0.0 for v in values):
                raise ValueError(f"host time: {name} must hold finite numbers >= 0")

    @property
    def active(self) -> bool:
        return any((self.step_s, self.per_prefill_token_s, self.per_decode_token_s, self.decode_step_s,
                    self.decode_per_token_s, any(self.tails_s), any(self.gaps_s)))

    def own_time_s(self, work: IterationWork) -> float:
        """The engine's own seconds for a step doing ``work``."""
        if work.num_prefill_tokens == 0:
            return self.decode_step_s + self.decode_per_token_s * work.num_decode_tokens
        return (self.step_s + self.per_prefill_token_s * work.num_prefill_tokens
                + self.per_decode_token_s * work.num_decode_tokens)

    def sampler(self, seed: int) -> "HostSampler":
        return HostSampler(self, seed)

    def describe(self) -> str:
        def median_ms(values: tuple[float, ...]) -> float:
            return float(np.median(values)) * 1e3 if values else 0.0

        def p99_ms(values: tuple[float, ...]) -> float:
            return float(np.quantile(values, 0.99)) * 1e3 if values else 0.0

        return (f"engine's own time: decode steps {self.decode_step_s * 1e3:.2f} ms + "
                f"{self.decode_per_token_s * 1e6:.0f} us per request, prefill steps {self.step_s * 1e3:.2f} ms + "
                f"{self.per_prefill_token_s * 1e6:.0f} us per prefill token + "
                f"{self.per_decode_token_s * 1e6:.0f} us per decode token; "
                f"tail {median_ms(self.tails_s):.2f} ms (p99 {p99_ms(self.tails_s):.2f}), gap "
                f"{median_ms(self.gaps_s):.2f} ms (p99 {p99_ms(self.gaps_s):.2f}); measured on {self.steps} live steps")


class HostSampler:
    """Per-step draws of a :class:`HostTime` (one seeded generator per simulated run)."""

    def __init__(self, host: HostTime, seed: int) -> None:
        self.host = host
        self._rng = np.random.default_rng(seed)
        self._tails = np.asarray(host.tails_s or (0.0,))
        self._gaps = np.asarray(host.gaps_s or (0.0,))

    def own_s(self, work: IterationWork) -> float:
        return self.host.own_time_s(work)

    def tail_s(self) -> float:
        return float(self._tails[self._rng.integers(len(self._tails))])

    def gap_s(self) -> float:
        return float(self._gaps[self._rng.integers(len(self._gaps))])


def _quantiles(values: list[float] | np.ndarray) -> tuple[float, ...]:
    if len(values) == 0:
        return ()
    levels = (np.arange(QUANTILES) + 0.5) / QUANTILES
    return tuple(float(v) for v in np.quantile(np.asarray(values, dtype=float), levels))


def fit_host_time(log_path: str | Path) -> HostTime:
    """Measure :class:`HostTime` on a camel scheduler's iteration log (sync engine).

    Per row with work: the own time ``end_s - begin_s`` (``schedule()`` to the step's report to
    the controller), fitted by non-negative least squares to the tokens, apart for steps that
    prefill and decode-only steps; the tail ``done_s - end_s - extra_s``; and
    between rows, the gap from ``done_s`` to the next ``begin_s`` while the engine is busy.
    Raises ValueError naming the file and line when a row lacks a field, or when it holds
    fewer than 3 steps with work.
    """
    rows = []
    with open(log_path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
                rows.append((float(row["begin_s"]), float(row["end_s"]), float(row["done_s"]), float(row["extra_s"]),
                             int(row["prefill_tokens"]), int(row["decode_tokens"])))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{log_path}: line {number} is not an iteration-log row with begin_s, end_s, done_s, "
                                 f"extra_s and token counts ({type(err).__name__}: {err})") from None
    worked = [r for r in rows if r[4] + r[5] > 0]
    if len(worked) < 3:
        raise ValueError(f"{log_path}: {len(worked)} steps with work; at least 3 are needed to fit the host time")
    prefill_rows = [r for r in worked if r[4] > 0]
    decode_rows = [r for r in worked if r[4] == 0]
    prefill_coef = _fit(prefill_rows, lambda r: (1.0, r[4], r[5]))
    decode_coef = _fit(decode_rows, lambda r: (1.0, r[5]))
    tails = [max(0.0, done - end - extra) for _, end, done, extra, _, _ in worked]
    gaps = [b[0] - a[2] for a, b in zip(rows, rows[1:], strict=False) if 0.0 <= b[0] - a[2] < BUSY_GAP_MAX_S]
    return HostTime(step_s=prefill_coef[0], per_prefill_token_s=prefill_coef[1], per_decode_token_s=prefill_coef[2],
                    decode_step_s=decode_coef[0], decode_per_token_s=decode_coef[1],
                    tails_s=_quantiles(tails), gaps_s=_quantiles(gaps), steps=len(worked))


def _fit(rows: Sequence[tuple[float, ...]], features) -> list[float]:
    """Non-negative least squares of the rows' own time (``end_s - begin_s``) on ``features``;
    zeros when there are fewer rows than features."""
    width = len(features(rows[0])) if rows else 0
    if len(rows) < max(1, width):
        return [0.0] * 3
    own = np.array([max(0.0, r[1] - r[0]) for r in rows])
    coef, _ = nnls(np.array([features(r) for r in rows], dtype=float), own)
    return [float(c) for c in coef] + [0.0] * (3 - width)
