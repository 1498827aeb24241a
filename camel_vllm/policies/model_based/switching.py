"""What switching the clock for a step's work costs: the time and energy a switched step takes
beyond what the board model predicts for it at its clock.

A clock change takes a while to take effect (Orin devfreq about 5 ms, arXiv 2606.16106v1; NVML
locked clocks unpublished: the device declares what it knows, ``DeviceInfo.switch_latency_s``).
That declared latency is the prior, worth PRIOR_SWITCHES switches; every step the controller
switched the clock for then measures the excess (measured minus predicted, s and J) into a
running mean. The projection charges an arm whose prefill steps run at another clock two
switches per prompt (up before it, back after) at this cost.
"""

from __future__ import annotations

from typing import Any

from camel_vllm.core.events import IterationWork

#: The declared latency counts as this many switches.
PRIOR_SWITCHES = 8.0
#: Memory of the running mean (switches).
MEMORY_SWITCHES = 200.0


class SwitchCost:
    """Seconds and joules one clock switch adds to a step (see the module docstring)."""

    def __init__(self, declared_latency_s: float) -> None:
        self.declared_latency_s = max(0.0, float(declared_latency_s))
        self.latency_s = self.declared_latency_s
        #: Joules per switch: unknown until measured (the latency at the step's power, meanwhile).
        self.energy_j: float | None = None
        self.measured = 0

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
