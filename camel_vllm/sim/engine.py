"""A discrete-event model of vLLM's continuous batching that drives the real controller.

Per engine step, as in vLLM v1's scheduler (vllm/v1/core/sched/scheduler.py):

- running requests are scheduled first, in arrival order: one decode token each, or the
  next chunk of an unfinished prefill, while the token budget
  (``max_num_batched_tokens``) lasts;
- then waiting requests are admitted first-come first-served while fewer than the batch cap
  are running and budget remains; a prompt longer than the budget is prefilled in chunks;
- the step that completes a prefill samples the first output token (TTFT), each later step
  one token; a request finishes with its last output token.

The batch cap is the controller's arm: ``arm.max_batch`` bounds admission only. Nothing is
preempted; when the cap drops below the running count, running requests drain. KV-cache
capacity is not modelled (a 1-3B model on a 32 GB Orin holds far more tokens than 28
sequences need).

Time: a :class:`VirtualClock` the emulated device also reads (``emulation_time:
absolute``). The step's begin and end are reported at the same virtual instant, so the
device's ``iteration_done(work, elapsed_s=0)`` returns the whole modelled step duration; the
clock then advances by it, and first tokens and finishes are stamped at the advanced time.
An idle engine jumps to the next arrival (the device accrues idle power over the gap).
Given the engine's own time (``EngineConfig.host``), a step ends at ``max(modelled, own time)``
as under the live scheduler; its tokens are out a measured tail later, and the next step begins
a measured gap after that, the device idle (draws seeded by ``host_seed``).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from camel_vllm.control.controller import Controller, Decision
from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork, RequestOutcome
from camel_vllm.sim.host import HostTime
from camel_vllm.sim.records import RequestRecord
from camel_vllm.traces.base import TraceRequest

logger = logging.getLogger("vllm.camel")

#: vLLM's default token budget per step for the OpenAI server on "other" hardware
#: (vllm/engine/arg_utils.py, ``default_max_num_batched_tokens``, vLLM 0.32).
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
#: Camel's largest batch on AGX Orin (arXiv 2508.09173): the engine's ``--max-num-seqs``.
DEFAULT_MAX_NUM_SEQS = 28


class VirtualClock:
    """Simulated time in seconds; callable, so it can be handed to a device as its clock."""

    __slots__ = ("now_s",)

    def __init__(self, now_s: float = 0.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@dataclass(frozen=True)
class EngineConfig:
    """The engine limits the model respects (vLLM flags of the same names)."""

    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    #: Step time used when the device models none (``NullDevice``): keeps time moving.
    fallback_step_s: float = 0.0
    #: The engine's own time per step and between steps (a live engine's, measured from its
    #: iteration log: :func:`camel_vllm.sim.host.fit_host_time`); the default: none.
    host: HostTime = HostTime()

    def __post_init__(self) -> None:
        # A cap or budget of 0 admits nothing and the event loop would never end.
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError(f"max_num_seqs ({self.max_num_seqs}) and max_num_batched_tokens "
                             f"({self.max_num_batched_tokens}) must be >= 1")


class _Req:
    __slots__ = ("rid", "arrival_s", "prompt", "output", "prefilled", "generated", "first_token_s")

    def __init__(self, req: TraceRequest) -> None:
        self.rid = req.request_id
        self.arrival_s = req.arrival_s
        self.prompt = req.prompt_tokens
        self.output = req.output_tokens
        self.prefilled = 0
        self.generated = 0
        self.first_token_s: float | None = None


@dataclass
class SimRun:
    """What one policy did on one trace: per-request records, decisions, device energy."""

    records: list[RequestRecord]
    decisions: list[tuple[float, int]]
    energy_j: float
    end_s: float
    iterations: int
    pulls: list[int]
    arm_labels: list[str]
    max_running_over_cap: int = 0
    max_running: int = 0
    energy_samples: list[tuple[float, float]] = field(default_factory=list)
    #: How the policy's learned state was loaded (``PolicyStateStore.load_outcome``); None: no state file.
    state_note: str | None = None

    @property
    def arm_switches(self) -> int:
        """Decisions whose arm differs from the previous decision's."""
        return sum(1 for a, b in zip(self.decisions, self.decisions[1:], strict=False) if a[1] != b[1])


class _DecisionLog:
    """A controller listener that keeps (time, arm index) per decision."""

    def __init__(self) -> None:
        self.decisions: list[tuple[float, int]] = []

    def on_decision(self, decision: Decision) -> None:
        self.decisions.append((decision.now_s, decision.arm_index))

    def on_outcome(self, outcome: RequestOutcome) -> None:
        return None

    def on_device_error(self, kind: str) -> None:
        return None

    def close(self) -> None:
        return None


class SimEngine:
    """Replays ``requests`` through ``controller`` on ``clock``; :meth:`run` returns a :class:`SimRun`."""

    def __init__(
        self,
        controller: Controller,
        clock: VirtualClock,
        requests: Sequence[TraceRequest],
        config: EngineConfig = EngineConfig(),
        on_finish: Callable[[int], None] | None = None,
        energy_sample_every_s: float = 0.0,
        host_seed: int = 0,
    ) -> None:
        self.controller = controller
        self.clock = clock
        self.requests = sorted(requests, key=lambda r: r.arrival_s)
        self.config = config
        self.on_finish = on_finish
        self.energy_sample_every_s = energy_sample_every_s
        #: Seeds the draws of the engine's own time (``config.host``), when one is given.
        self.host_seed = host_seed
        self.log = _DecisionLog()
        controller.listeners.append(self.log)

    def run(self) -> SimRun:
        ctl = self.controller
        clock = self.clock
        device = ctl.device
        budget_max = self.config.max_num_batched_tokens
        fallback_s = self.config.fallback_step_s
        host = self.config.host.sampler(self.host_seed) if self.config.host.active else None
        pending = [_Req(r) for r in self.requests]
        n = len(pending)
        waiting: deque[_Req] = deque()
        running: list[_Req] = []
        records: list[RequestRecord] = []
        energy_samples: list[tuple[float, float]] = []
        next_sample_s = 0.0
        sample_every = self.energy_sample_every_s
        waiting_prompt = 0
        nxt = 0
        iterations = 0
        over_cap = 0
        max_running = 0
        start_energy_j = device.energy_j()
        begin = ctl.begin_iteration
        decision_due = ctl.decision_due
        step_clock = ctl.step_frequency
        end = ctl.end_iteration
        on_finish = self.on_finish

        while nxt < n or waiting or running:
            now = clock.now_s
            while nxt < n and pending[nxt].arrival_s <= now:
                r = pending[nxt]
                ctl.request_arrived(r.rid, r.arrival_s, r.prompt)
                waiting.append(r)
                waiting_prompt += r.prompt
                nxt += 1
            if not waiting and not running:
                clock.now_s = pending[nxt].arrival_s  # idle until the next arrival
                continue
            if sample_every and now >= next_sample_s:
                energy_samples.append((now, device.energy_j() - start_energy_j))
                next_sample_s = now + sample_every

            if decision_due(now, len(running) + len(waiting)):
                out = [r.generated for r in running]
                snapshot = EngineSnapshot(now, len(running), len(waiting), waiting_prompt, sum(out),
                                          float(sum(k * k for k in out)))
            else:
                snapshot = EngineSnapshot(now, len(running), len(waiting), waiting_prompt)
            cap = begin(snapshot).max_batch
            budget = budget_max
            tokens: dict[str, int] = {}
            prefill = decode = context = 0
            for r in running:
                if budget <= 0:
                    break
                if r.prefilled < r.prompt:
                    k = r.prompt - r.prefilled
                    if k > budget:
                        k = budget
                    prefill += k
                else:
                    k = 1
                    decode += 1
                    context += r.prompt + r.generated
                tokens[r.rid] = k
                budget -= k
            before = len(running)
            while waiting and len(running) < cap and budget > 0:
                r = waiting.popleft()
                waiting_prompt -= r.prompt
                k = r.prompt if r.prompt <= budget else budget
                prefill += k
                tokens[r.rid] = k
                budget -= k
                running.append(r)
            if len(running) > max(cap, before):
                over_cap += 1
            if len(running) > max_running:
                max_running = len(running)

            work = IterationWork(tokens, prefill, decode, context)
            step_clock(work)  # a clock that follows the work is set for this step
            if host is not None:  # the engine's own time first; the device adds what the model says beyond it
                now = clock.now_s = now + host.own_s(work)
            extra_s = end(now, work)
            iterations += 1
            t = now + (extra_s if extra_s > 0.0 else fallback_s)
            if host is not None:
                t += host.tail_s()
            clock.now_s = t

            finished = False
            for r in running:
                ran = tokens.get(r.rid)
                if ran is None:
                    continue
                if r.prefilled < r.prompt:
                    r.prefilled += ran
                    if r.prefilled >= r.prompt:
                        r.generated = 1
                        r.first_token_s = t
                else:
                    r.generated += 1
                if r.generated >= r.output:
                    finished = True
            if finished:
                still: list[_Req] = []
                for r in running:
                    if r.generated >= r.output:
                        outcome = ctl.request_finished(FinishedRequest(
                            r.rid, r.arrival_s, t, r.prompt, r.generated, r.first_token_s))
                        energy = outcome.energy_j if outcome is not None else 0.0
                        ttft = None if r.first_token_s is None else r.first_token_s - r.arrival_s
                        records.append(RequestRecord(r.rid, r.arrival_s, t, ttft, energy, output_tokens=r.generated))
                        if on_finish is not None:
                            on_finish(1)
                    else:
                        still.append(r)
                running = still
            if host is not None:
                clock.now_s = t + host.gap_s()  # the engine's loop before the next step, the device idle

        energy_j = device.energy_j() - start_energy_j
        energy_samples.append((clock.now_s, energy_j))
        return SimRun(
            records=records,
            decisions=list(self.log.decisions),
            energy_j=energy_j,
            end_s=clock.now_s,
            iterations=iterations,
            pulls=list(ctl.pulls),
            arm_labels=[a.label for a in ctl.arms.arms],
            max_running_over_cap=over_cap,
            max_running=max_running,
            energy_samples=energy_samples,
        )
