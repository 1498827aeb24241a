"""Per-request energy attribution: the ledger of what the controller charged each request.

Each engine step's energy is split over its tokens: a request is charged the step's energy per
token (J) times its tokens, an iteration share of its tokens over the step's tokens, its tokens
under the step's slot (the (context, arm) key the controller numbered) and, if the step's energy
was not measured, the unmeasured flag. Doing that for every request of every step in Python costs
about 0.3 us a request (30 us a step at datacenter size, 81 requests a step), so the ledger
charges decoding requests lazily.

Requests given exactly one token in consecutive steps form the *cohort*. The ledger keeps sums
over steps of the energy per token (J), of 1 / step tokens (and of it and a count over the
decode-only steps, those without a prefill token), a count of unmeasured steps, a step
count and the slot segments (slot, first step); a member notes the sums when it joins and is
*settled* (its trace brought up to date from the sums' growth since) when it leaves: absent from
a step, given another token count, finished or aborted. Most steps hold just the cohort, which
one C-level comparison (``tokens == cohort``, the cohort a dict of ones) confirms; otherwise a
C-level symmetric difference finds the others (prefill chunks, newcomers, speculative steps) and
the absent members, and a C-level count of ones the members given another token count; those
others are charged one by one, exactly as before. Totals agree with per-step charging up to the
order in which floats are summed (the sums restart every REBASE_STEPS steps, which keeps that
rounding near 1e-13 of a request's energy).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from operator import countOf
from typing import Mapping

#: Steps after which the cohort is settled and the sums restart (a bound on their rounding).
REBASE_STEPS = 4096
#: Slot segments after which the cohort is settled and the sums restart (a bound on memory).
MAX_SEGMENTS = 64


@dataclass(slots=True)
class RequestTrace:
    """Per-request accumulators: energy charged so far and tokens per (context, arm) slot.

    While the request is in the ledger's cohort these lag behind: :meth:`EnergyLedger.pop`
    settles a trace before handing it out."""

    energy_j: float = 0.0
    tokens_by_slot: dict[int, int] = field(default_factory=dict)  # slot: see Controller._slot
    iteration_shares: float = 0.0  # sum over iterations of tokens / iteration's tokens
    decode_shares: float = 0.0  # the same over its decode-only iterations (1 / their tokens)
    decode_steps: int = 0  # decode-only iterations that served it one token
    first_s: float | None = None  # begin of the first iteration that served it (s)
    unmeasured: bool = False  # served by an iteration whose energy was not measured
    # The ledger's sums when it joined the cohort (meaningful while a member).
    joined_j: float = 0.0
    joined_shares: float = 0.0
    joined_decode_shares: float = 0.0
    joined_decode_steps: int = 0
    joined_unmeasured: int = 0
    joined_step: int = 0


class EnergyLedger:
    """The traces of the requests the controller tracks, charged step by step (see the module)."""

    def __init__(self) -> None:
        self._traces: dict[str, RequestTrace] = {}
        self._cohort: dict[str, int] = {}  # members' ids (each has a trace): 1, their tokens a step
        self._energy_j = 0.0  # sum over steps of the step's energy per token (J)
        self._shares = 0.0  # sum over steps of 1 / the step's tokens
        self._decode_shares = 0.0  # the same over decode-only steps (no prefill token)
        self._decode_steps = 0
        self._unmeasured = 0  # steps whose energy was not measured
        self._steps = 0
        self._seg_slots: list[int] = []  # slot of each segment of steps...
        self._seg_starts: list[int] = []  # ...and its first step (increasing)

    def __len__(self) -> int:
        return len(self._traces)

    def add(self, request_id: str) -> None:
        """Track a request (a no-op for one already tracked)."""
        self._traces.setdefault(request_id, RequestTrace())

    def pop(self, request_id: str) -> RequestTrace | None:
        """Stop tracking a request; its trace, settled (None: not tracked)."""
        trace = self._traces.pop(request_id, None)
        if trace is not None and self._cohort.pop(request_id, 0):
            self._settle(trace)
        return trace

    def charge(self, tokens: Mapping[str, int], begin_s: float, slot: int, per_token_j: float,
               inv_tokens: float, measured: bool, decode_only: bool = False) -> int:
        """Charge a step that began at ``begin_s`` (s) and ran ``tokens`` (per request id) under
        ``slot``: ``per_token_j`` (J) a token, iteration share ``inv_tokens`` (1 / the step's
        tokens) a token; ``decode_only``: the step ran no prefill token (its one-token requests'
        decode-only shares and steps count it). A request not tracked (finished or aborted while the step was in
        flight) is charged to no one. Returns the tokens charged."""
        cohort, traces = self._cohort, self._traces
        if cohort and (self._steps >= REBASE_STEPS or len(self._seg_slots) >= MAX_SEGMENTS):
            self._settle_all()
        if not cohort:
            if self._steps:
                self._restart()
        elif tokens == cohort:  # one C-level pass: every member, one token each, and no one else
            self._energy_j += per_token_j  # (self._advance, inlined: the common step)
            self._shares += inv_tokens
            if decode_only:
                self._decode_shares += inv_tokens
                self._decode_steps += 1
            if not measured:
                self._unmeasured += 1
            if self._seg_slots[-1] != slot:
                self._seg_slots.append(slot)
                self._seg_starts.append(self._steps)
            self._steps += 1
            return len(cohort)
        # Outsiders and absent members in one C-level pass; members present are all given one
        # token if the count of ones says so.
        odd = cohort.keys() ^ tokens  # (a set: iterating a mapping gives its keys)
        outsiders: list[str] = []
        ones_outside = 0
        if odd:
            leaving: list[str] = []
            for request_id in odd:
                if request_id in cohort:
                    leaving.append(request_id)
                else:
                    outsiders.append(request_id)
                    if tokens[request_id] == 1:
                        ones_outside += 1
            for request_id in leaving:
                del cohort[request_id]
                self._settle(traces[request_id])
        if countOf(tokens.values(), 1) - ones_outside != len(cohort):
            # A member was given another token count (a speculative step): settled, then
            # charged for this step as an outsider.
            for request_id in [r for r in cohort if tokens[r] != 1]:
                del cohort[request_id]
                self._settle(traces[request_id])
                outsiders.append(request_id)
        charged = 0
        for request_id in outsiders:
            trace = traces.get(request_id)
            if trace is None:
                continue  # finished or aborted while the step was in flight
            if trace.first_s is None:
                trace.first_s = begin_s
            count = tokens[request_id]
            if count == 1:  # joins: charged for this step by the sums below
                trace.joined_j, trace.joined_shares = self._energy_j, self._shares
                trace.joined_decode_shares, trace.joined_decode_steps = self._decode_shares, self._decode_steps
                trace.joined_unmeasured, trace.joined_step = self._unmeasured, self._steps
                cohort[request_id] = 1
                continue
            trace.energy_j += per_token_j * count
            trace.iteration_shares += count * inv_tokens
            if not measured:
                trace.unmeasured = True
            by_slot = trace.tokens_by_slot
            by_slot[slot] = by_slot.get(slot, 0) + count
            charged += count
        if cohort:
            self._advance(slot, per_token_j, inv_tokens, measured, decode_only)
        return charged + len(cohort)

    def _advance(self, slot: int, per_token_j: float, inv_tokens: float, measured: bool,
                 decode_only: bool) -> None:
        """Charge the cohort (each member one token) for a step: the sums move on."""
        self._energy_j += per_token_j
        self._shares += inv_tokens
        if decode_only:
            self._decode_shares += inv_tokens
            self._decode_steps += 1
        if not measured:
            self._unmeasured += 1
        if not self._seg_slots or self._seg_slots[-1] != slot:
            self._seg_slots.append(slot)
            self._seg_starts.append(self._steps)
        self._steps += 1

    def _settle(self, trace: RequestTrace) -> None:
        """Bring a member's trace up to date (the caller takes it out of the cohort)."""
        trace.energy_j += self._energy_j - trace.joined_j
        trace.iteration_shares += self._shares - trace.joined_shares
        trace.decode_shares += self._decode_shares - trace.joined_decode_shares
        trace.decode_steps += self._decode_steps - trace.joined_decode_steps
        if self._unmeasured > trace.joined_unmeasured:
            trace.unmeasured = True
        by_slot, start, steps = trace.tokens_by_slot, trace.joined_step, self._steps
        slots, starts = self._seg_slots, self._seg_starts
        if starts[-1] <= start:  # joined in the last segment
            slot = slots[-1]
            by_slot[slot] = by_slot.get(slot, 0) + steps - start
            return
        index = bisect_right(starts, start) - 1
        while start < steps:  # segments in order: the dict keeps first-served order
            end = starts[index + 1] if index + 1 < len(starts) else steps
            slot = slots[index]
            by_slot[slot] = by_slot.get(slot, 0) + end - start
            start, index = end, index + 1

    def _settle_all(self) -> None:
        """Settle every member and empty the cohort (the sums can then restart)."""
        for request_id in self._cohort:
            self._settle(self._traces[request_id])
        self._cohort.clear()

    def _restart(self) -> None:
        """Zero the sums (the cohort is empty)."""
        self._energy_j = self._shares = self._decode_shares = 0.0
        self._unmeasured = self._steps = self._decode_steps = 0
        self._seg_slots.clear()
        self._seg_starts.clear()
