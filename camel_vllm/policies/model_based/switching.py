"""What switching the clock for a step's work costs: the time and energy a switched step takes
beyond what the board model predicts for it at its clock.

A clock change takes a while to take effect (Orin devfreq about 5 ms, arXiv 2606.16106v1; NVML
locked clocks unpublished: the device declares what it knows, ``DeviceInfo.switch_latency_s``).
That declared latency is the prior, worth PRIOR_SWITCHES switches; every step the controller
switched the clock for then measures the excess (measured minus predicted, s and J) into a
running mean.

How many switches a prompt brings is measured too. An arm whose prefill steps run at another
clock switches wherever a mostly-prefill step follows another kind of step or the reverse, so
the workload's step sequence says how often, whichever arm serves it: two per prompt where
prompts come one by one among decode steps, next to none where they come in bursts that fill
runs of prefill steps (on the H100 at half load, the Azure code trace's 400 prompts made 11
switches). The projection charges such an arm :attr:`SwitchCost.per_prompt` switches per prompt
at the cost above; two (up before it, back after) until PRIOR_PROMPTS prompts have been seen.
"""

from __future__ import annotations

from typing import Any

from camel_vllm.core.events import IterationWork, is_prefill_step

#: The declared latency counts as this many switches.
PRIOR_SWITCHES = 8.0
#: Memory of the running mean (switches).
MEMORY_SWITCHES = 200.0
#: Switches per prompt before any is measured (up to the prefill clock and back), worth this
#: many prompts; the count forgets with a memory of MEMORY_PROMPTS prompts.
PRIOR_PER_PROMPT = 2.0
PRIOR_PROMPTS = 8.0
MEMORY_PROMPTS = 500.0


class SwitchCost:
    """Seconds and joules one clock switch adds to a step (see the module docstring)."""

    def __init__(self, declared_latency_s: float) -> None:
        self.declared_latency_s = max(0.0, float(declared_latency_s))
        self.latency_s = self.declared_latency_s
        #: Joules per switch: unknown until measured (the latency at the step's power, meanwhile).
        self.energy_j: float | None = None
        self.measured = 0
        #: Step-kind changes and prompts arrived, each decayed by a prompt's share of the memory.
        self._changes = PRIOR_PER_PROMPT * PRIOR_PROMPTS
        self._prompts = PRIOR_PROMPTS
        self._last_prefill: bool | None = None

    def observe_step(self, work: IterationWork) -> None:
        """One engine step of any kind: a change between mostly-prefill steps and others would
        be a switch under an arm whose prefill steps run at another clock."""
        prefill = is_prefill_step(work)
        if self._last_prefill is not None and prefill != self._last_prefill:
            self._changes += 1.0
        self._last_prefill = prefill

    def observe_prompt(self) -> None:
        """A request arrived: its prompt will be prefilled."""
        keep = 1.0 - 1.0 / MEMORY_PROMPTS
        self._changes *= keep
        self._prompts = self._prompts * keep + 1.0

    @property
    def per_prompt(self) -> float:
        """Switches an arm whose prefill steps run at another clock makes per prompt, measured
        (PRIOR_PER_PROMPT before any prompt)."""
        return self._changes / self._prompts

    def observe(self, board: Any, freq_hz: float | None, work: IterationWork, duration_s: float,
                energy_j: float | None) -> None:
        """A step the clock was switched for: its excess over the board model's prediction."""
        if freq_hz is None or not board.ready or not duration_s > 0.0:
            return
        t_pred, e_pred = board.predict(freq_hz, work)
        self.measured += 1
        weight = 1.0 / min(self.measured + PRIOR_SWITCHES, MEMORY_SWITCHES)
        self.latency_s += weight * (max(0.0, duration_s - t_pred) - self.latency_s)
        if energy_j is not None and energy_j > 0.0:
            excess_j = max(0.0, energy_j - e_pred)
            self.energy_j = excess_j if self.energy_j is None else self.energy_j + weight * (excess_j - self.energy_j)

    def cost(self, step_power_w: float) -> tuple[float, float]:
        """(seconds, joules) of one switch; joules at ``step_power_w`` until some were measured."""
        energy = self.energy_j if self.energy_j is not None else self.latency_s * step_power_w
        return self.latency_s, energy
