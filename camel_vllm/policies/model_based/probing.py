"""Probe runs: a few decode steps at a clock the board model has not seen, so that it learns how
decode time and energy follow the clock from the engine's own steps, not from its prior.

camel judges an arm by what its board model projects, and a clock the model has never seen is
projected with the prior's shape (half of a step's time growing with 1 / f, module
:mod:`~camel_vllm.policies.model_based.board`). A board whose decode is memory-bound, as an H100's
is, decodes at a third of its top clock little slower than at the top, so that prior makes every
low clock look up to twice as slow, camel never plays one, and the prior is never corrected: on the
emulated H100 it projected the arm that decodes at 660 MHz and prefills at the top clock at 1.9 x
the default arm's EDP on long prompts at half load, where the static arm measured 0.83 x
(docs/camel-model.md). A decode step is the cheapest experiment there is: one step at another
clock costs at most a step's time, and every step is measured.

So while nobody waits, after every PROBE_EVERY_STEPS steps a run of PROBE_RUN_STEPS decode steps
goes to the next clock in PROBE_CLOCKS order that has fewer than PROBE_ENOUGH_STEPS decode steps
observed; a mostly-prefill step ends a run (it keeps the arm's rule). The lowest clock and the
one whose 1 / f lies halfway between it and the top's are enough: the board model's clock basis
has three terms, and the top clock is played anyway. The runs stop once both clocks have their
steps, after about 2 x PROBE_ENOUGH_STEPS / PROBE_RUN_STEPS runs (~1 % of the steps until then, at
most two switches a run); no random draw is used, so the Thompson draws are the same with or
without them. The three constants have no public source; each trades how fast the model learns
against what the probes cost (docs/camel-model.md has the measurements).
"""

from __future__ import annotations

from typing import Sequence

from camel_vllm.core.events import Arm, EngineSnapshot, IterationWork, is_prefill_step

#: Decode steps in one probe run (two switches buy this many observations).
PROBE_RUN_STEPS = 8
#: Steps between the starts of two probe runs, at least.
PROBE_EVERY_STEPS = 512
#: Decode steps observed at a clock after which it is no longer probed.
PROBE_ENOUGH_STEPS = 24


def probe_clocks(clocks_hz: Sequence[float]) -> list[float]:
    """The clocks probed, in order: the lowest, then the one whose 1 / f is nearest halfway
    between the lowest's and the top's (none for a board of fewer than three clocks)."""
    clocks = sorted({float(f) for f in clocks_hz})
    if len(clocks) < 3:
        return []
    low, top = clocks[0], clocks[-1]
    halfway = 2.0 / (1.0 / low + 1.0 / top)
    middle = min(clocks[1:-1], key=lambda f: abs(1.0 / f - 1.0 / halfway))
    return [low, middle]


class Prober:
    """Which clock each step runs at: the arm's rule, or a probe run (see the module docstring)."""

    def __init__(self, clocks_hz: Sequence[float | None]) -> None:
        self.clocks_hz = probe_clocks([f for f in clocks_hz if f is not None])
        #: Decode steps the board model learned from at each probed clock (counted until done).
        self.observed = [0] * len(self.clocks_hz)
        #: Whether every probed clock has its steps (then the per-step calls only apply the arm's rule).
        self.done = not self.clocks_hz
        self._since = 0
        self._left = 0
        self._clock: float | None = None
        #: Probe runs started and probe steps run so far.
        self.runs = 0
        self.steps = 0

    def observe(self, freq_hz: float | None, work: IterationWork) -> None:
        """A step the board model learns from ran at ``freq_hz`` (not one the clock was switched
        for: its time holds the switch)."""
        self._since += 1
        if self.done or freq_hz not in self.clocks_hz or is_prefill_step(work):
            return
        self.observed[self.clocks_hz.index(freq_hz)] += 1
        self.done = min(self.observed) >= PROBE_ENOUGH_STEPS

    def step_frequency(self, work: IterationWork, arm: Arm, snapshot: EngineSnapshot | None) -> float | None:
        """The clock for a step doing ``work`` under ``arm``."""
        own = arm.step_freq_hz(work)
        if self.done and not self._left:
            return own
        if is_prefill_step(work):
            self._left = 0  # a run is decode steps only
            return own
        if self._left > 0:
            self._left -= 1
            self.steps += 1
            return self._clock
        if self._since < PROBE_EVERY_STEPS or (snapshot is not None and snapshot.num_waiting > 0):
            return own
        clock = next(f for f, n in zip(self.clocks_hz, self.observed, strict=True) if n < PROBE_ENOUGH_STEPS)
        if clock == own:
            return own
        self._clock, self._left, self._since = clock, PROBE_RUN_STEPS - 1, 0
        self.runs += 1
        self.steps += 1
        return clock
