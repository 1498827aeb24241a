"""Plain values that cross the boundary between an engine adapter and the controller.

Every engine adapter (the vLLM scheduler, the discrete-event simulator) speaks to the
controller only in these types, so the controller never imports an engine. Units live in
field names: seconds (``_s``), joules (``_j``), hertz (``_hz``), watts (``_w``), tokens.
Times passed as ``now_s`` are on one clock per adapter (vLLM: ``time.time()``, because
vLLM stamps ``Request.arrival_time`` with it; simulator: virtual seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Arm:
    """One configuration the controller can apply between iterations.

    ``freq_hz`` is ``None`` for a batch-only arm: the GPU clock is left to the device's own
    governor (read-only mode, or a device whose frequency cannot be written).
    ``prefill_freq_hz``: the clock of the steps that are mostly prefill (``is_prefill_step``),
    when it differs from ``freq_hz`` (the clock follows the work); ``None``: every step at
    ``freq_hz``.
    """

    freq_hz: float | None
    max_batch: int
    prefill_freq_hz: float | None = None

    @property
    def freq_mhz(self) -> float | None:
        return None if self.freq_hz is None else self.freq_hz / 1e6

    @property
    def label(self) -> str:
        """``"MHZ/BATCH"``, the key used in benchmark JSON and metric labels (``"auto/8"``);
        ``"MHZ/BATCH/PREFILL_MHZ"`` for an arm whose prefill steps run at another clock."""
        base = f"{format_mhz(self.freq_hz)}/{self.max_batch}"
        return base if self.prefill_freq_hz is None else f"{base}/{format_mhz(self.prefill_freq_hz)}"

    def step_freq_hz(self, work: "IterationWork") -> float | None:
        """The clock a step doing ``work`` runs at under this arm."""
        if self.prefill_freq_hz is not None and is_prefill_step(work):
            return self.prefill_freq_hz
        return self.freq_hz


def is_prefill_step(work: "IterationWork") -> bool:
    """A step that is mostly prefill: at least as many prefill tokens as decode tokens (the
    emulator's phase test too, ``devices/emulator/roofline.py``)."""
    return work.num_prefill_tokens > 0 and work.num_prefill_tokens >= work.num_decode_tokens


def format_mhz(freq_hz: float | None) -> str:
    """``930750000.0 -> "930.75"``, ``612e6 -> "612"``, ``None -> "auto"``."""
    if freq_hz is None:
        return "auto"
    return f"{freq_hz / 1e6:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class EngineSnapshot:
    """What the engine sees when an iteration begins (before it schedules).

    ``waiting_prompt_tokens`` is the sum of prompt tokens over waiting requests; with
    ``num_waiting`` it gives the prompt-length mix the context is built from.
    ``running_output_tokens`` and ``running_output_tokens_sq`` are the sum (and sum of
    squares) over running requests of the output tokens generated so far: lower bounds on
    their output lengths, which keep an estimate of output lengths from being only the
    short requests that finished first. Adapters fill these three only when
    :meth:`~camel_vllm.control.controller.Controller.decision_due` (0: not reported).
    """

    now_s: float
    num_running: int
    num_waiting: int
    waiting_prompt_tokens: int = 0
    running_output_tokens: int = 0
    running_output_tokens_sq: float = 0.0


@dataclass(frozen=True)
class IterationWork:
    """The work one engine iteration did, in tokens, for energy attribution and emulation.

    ``tokens_by_request`` maps request id to tokens scheduled for it this iteration (a
    prefill chunk or one decode token). ``context_tokens`` is the sum over decode requests
    of their context length (KV-cache tokens read by attention), as the roofline needs.
    """

    tokens_by_request: Mapping[str, int]
    num_prefill_tokens: int
    num_decode_tokens: int
    context_tokens: int = 0

    @property
    def num_requests(self) -> int:
        return len(self.tokens_by_request)

    @property
    def num_tokens(self) -> int:
        return self.num_prefill_tokens + self.num_decode_tokens


@dataclass(frozen=True)
class FinishedRequest:
    """A request the engine finished, with its timestamps on the adapter's clock."""

    request_id: str
    arrival_s: float
    finish_s: float
    prompt_tokens: int
    output_tokens: int
    first_token_s: float | None = None

    @property
    def latency_s(self) -> float:
        return max(0.0, self.finish_s - self.arrival_s)

    @property
    def ttft_s(self) -> float | None:
        if self.first_token_s is None:
            return None
        return max(0.0, self.first_token_s - self.arrival_s)


@dataclass(frozen=True)
class Context:
    """The situation a decision is made in, as a policy sees it.

    ``id`` is a discrete bucket (0 when the controller is not contextual); ``features`` are
    the quantised values it was built from (order and meaning fixed by
    :mod:`camel_vllm.control.context`). Frozen and hashable: it keys per-context statistics.
    """

    id: int = 0
    features: tuple[float, ...] = ()


@dataclass(frozen=True)
class RequestOutcome:
    """What the controller concluded about one finished request.

    ``arm_shares`` maps each (context, arm index) that served the request to the share of
    its scheduled tokens served there (shares sum to 1); the cost is credited to each with
    that weight. ``edp_js`` = ``energy_j`` x ``latency_s``; ``cost`` is on the policy's scale
    (None when the energy was not measured, see ``energy_measured``).
    ``iteration_shares`` is the sum over the iterations that served the request of its share
    of each iteration's tokens (1.0 = one whole iteration): how many iterations' worth of
    energy it was charged, which depends on how many requests shared them (``None`` when the
    producer does not track it).
    """

    request: FinishedRequest
    energy_j: float
    edp_js: float
    cost: float | None
    arm_shares: Mapping[tuple[Context, int], float] = field(default_factory=dict)
    iteration_shares: float | None = None
    #: ``iteration_shares`` over its decode-only iterations (those without a prefill token), and
    #: how many served it (0: none, or not tracked): ``decode_shares / decode_steps`` is the mean
    #: of 1 / the requests sharing its decode-only steps.
    decode_shares: float = 0.0
    decode_steps: int = 0
    #: When the engine first scheduled the request (adapter clock; None: not tracked), so
    #: ``first_scheduled_s - arrival_s`` is its wait in the queue and the rest its service.
    first_scheduled_s: float | None = None
    #: False when an iteration that served the request had no energy measurement (a sensor
    #: gap, or a device without a sensor): ``energy_j`` is what was attributed (0 J, or a
    #: share of the lump that closed the gap), ``cost`` is None and no arm was credited.
    energy_measured: bool = True

    @property
    def latency_s(self) -> float:
        return self.request.latency_s

    @property
    def mean_batch(self) -> float | None:
        """Output tokens per whole iteration paid: about the harmonic mean of the number of
        requests in its decode steps (``None`` without ``iteration_shares`` or output)."""
        if not self.iteration_shares or self.request.output_tokens <= 0:
            return None
        return self.request.output_tokens / self.iteration_shares
