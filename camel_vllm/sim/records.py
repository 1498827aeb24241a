"""One request's outcome in a run, as the simulator and the live replay record it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request's outcome in a run. ``energy_j`` is NaN where not measured per request."""

    request_id: str
    arrival_s: float
    finish_s: float
    ttft_s: float | None
    energy_j: float
    ok: bool = True
    error: str = ""
    #: Output tokens generated (0: not recorded), for the time per output token.
    output_tokens: int = 0

    @property
    def latency_s(self) -> float:
        return max(0.0, self.finish_s - self.arrival_s)

    @property
    def edp_js(self) -> float:
        return self.energy_j * self.latency_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (s); None without a first token or a second."""
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return max(0.0, self.latency_s - self.ttft_s) / (self.output_tokens - 1)
