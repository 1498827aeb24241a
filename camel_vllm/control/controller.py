"""The engine-agnostic controller: picks arms, applies them, attributes energy, learns.

The controller owns time, load and cost: it ends epochs, hands the policy one
:class:`~camel_vllm.policies.decision.DecisionInput` per decision and the
:class:`~camel_vllm.policies.decision.Deadline` of the next one between decisions, computes every
request's cost, and copies the policy's beliefs for the metrics on the engine thread
(:mod:`~camel_vllm.control.snapshots`). Engine adapters (the vLLM scheduler, the simulator) feed
it the same few events:
:meth:`Controller.request_arrived`, :meth:`~Controller.begin_iteration` (returns the arm),
:meth:`~Controller.end_iteration` (the step's tokens per request), :meth:`~Controller.request_finished`
or :meth:`~Controller.request_aborted`, and :meth:`~Controller.close`. docs/controller.md
describes epochs, energy attribution, unmeasured energy, crediting and the policy hooks.

A policy that raises from any of its hooks never takes the engine down: the controller logs
one line, counts ``camel_device_errors_total{kind="policy"}`` and from then on plays the
default arm (:class:`DefaultArmPolicy`) without calling that policy again; energy attribution
and request accounting go on, and the learned-state file is left as it was.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol, Sequence

from camel_vllm.control.context import ContextModel
from camel_vllm.control.ledger import EnergyLedger
from camel_vllm.control.snapshots import PolicySnapshots
from camel_vllm.core.arms import ArmSet, same_frequency
from camel_vllm.core.config import DEFAULT_EPOCH_ITERATIONS
from camel_vllm.core.cost import CostFunction
from camel_vllm.core.events import (
    Arm,
    Context,
    EngineSnapshot,
    FinishedRequest,
    IterationWork,
    RequestOutcome,
)
from camel_vllm.devices.base import Device, DeviceError, DevicePermissionError, EnergyReading
from camel_vllm.policies.base import Policy
from camel_vllm.policies.decision import Deadline, DecisionInput
from camel_vllm.policies.declaration import Cadence
from camel_vllm.policies.workload import WorkloadEstimator

logger = logging.getLogger("vllm.camel")

#: Iterations before a decision on which the policy's ``maintain()`` hook runs (the choice of 2
#: is measured in docs/controller.md).
MAINTAIN_LEAD_ITERATIONS = 2
#: Early decisions (policies with ``decide_on_demand_growth``): demand must reach twice its
#: level at the last decision plus this many requests, and the epoch must have run this many
#: iterations (a bound on the decision rate: at most one decision per 4 steps).
DEMAND_GROWTH_MIN = 4
MIN_EPOCH_ITERATIONS = 4


@dataclass(frozen=True)
class Decision:
    """One decision: the arm chosen at the start of an epoch and what the device applied."""

    number: int
    now_s: float
    context: Context
    arm_index: int
    arm: Arm
    applied_freq_hz: float | None
    frequency_switched: bool


class ControllerListener(Protocol):
    """Something that watches the controller: metrics exporter, request log, benchmarks."""

    def on_decision(self, decision: Decision) -> None: ...

    def on_outcome(self, outcome: RequestOutcome) -> None: ...

    def on_device_error(self, kind: str) -> None: ...

    def close(self) -> None: ...


class StateStore(Protocol):
    """Where the policy's learned state lives between runs (see :mod:`camel_vllm.control.state`)."""

    #: What loading the state at start-up did, in one line (None: not loaded).
    load_outcome: str | None

    def save(self, policy: Policy) -> None: ...


class DefaultArmPolicy(Policy):
    """What the controller plays once its policy failed: the default arm
    (:meth:`ArmSet.default_index <camel_vllm.core.arms.ArmSet.default_index>`: the highest
    available clock with the largest cap, vLLM left alone), learning nothing."""

    name = "default-arm"

    def __init__(self, arms: ArmSet) -> None:
        self.arms = arms

    def select(self, decision: DecisionInput) -> int:
        return self.arms.default_index()

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        return None

    def estimates(self) -> list:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: object) -> None:
        return None


class Controller:
    """Chooses and applies arms; measures and credits per-request cost to the policy."""

    def __init__(
        self,
        *,
        arms: ArmSet,
        policy: Policy,
        device: Device,
        cost: CostFunction,
        context_model: ContextModel,
        epoch_iterations: int = DEFAULT_EPOCH_ITERATIONS,
        epoch_s: float = 0.0,
        batch_only: bool = False,
        listeners: Sequence[ControllerListener] = (),
        state_store: StateStore | None = None,
        state_save_every: int = 50,
        observe_budget: int = 0,
        cadence: Cadence | None = None,
    ) -> None:
        if epoch_iterations < 1:
            raise ValueError("epoch_iterations must be >= 1")
        if not isinstance(policy, Policy):
            raise TypeError(f"policy {type(policy).__qualname__} does not derive from "
                            "camel_vllm.policies.base.Policy (whose optional hooks default to no-ops)")
        self.arms = arms
        self.policy = policy
        self.device = device
        self.cost = cost
        self.context_model = context_model
        self.epoch_iterations = epoch_iterations
        self.epoch_s = epoch_s
        self.batch_only = batch_only
        self.listeners = list(listeners)
        self.state_store = state_store
        self.state_save_every = max(1, state_save_every)
        self.observe_budget = max(0, int(observe_budget))

        self.decisions = 0
        self.frequency_switches = 0
        self.pulls = [0] * len(arms)
        self.updates = 0
        #: Finished requests reported but not credited: their energy spans an unmeasured interval.
        self.unmeasured_requests = 0
        self.energy_attributed_j = 0.0
        self.current_index: int | None = None
        self.current_context = Context()
        self.applied_freq_hz: float | None = device.current_frequency_hz()
        self._epoch_iterations_left = 0
        self._epoch_start_s = 0.0
        #: Steps begun and not ended: (begin time, slot, the clock the step runs at, whether the
        #: clock was switched for it).
        self._in_flight: deque[tuple[float, int, float | None, bool]] = deque()
        # (context, arm) keys numbered once, so the per-token bookkeeping hashes ints,
        # not Context dataclasses (measured: the hot path of end_iteration).
        self._slot_of: dict[tuple[Context, int], int] = {}
        self._key_of: list[tuple[Context, int]] = []
        self._slot = 0
        self._energy_mark_j = 0.0
        self._gaps_mark = 0
        self._failing_seen = 0
        self._energy_measurable = device.info().energy_source != "none"
        self._energy_reading = getattr(device, "energy_reading", None)  # looked up once: hot path
        #: Per-request energy attribution (docs: camel_vllm.control.ledger).
        self._ledger = EnergyLedger()
        # Credits waiting for the policy when observe_budget > 0: (arm, context, cost, weight).
        self._pending: deque[tuple[int, Context, float, float]] = deque()
        self._closed = False
        #: How the policy is paced (its declaration's cadence; the controller owns time).
        self.cadence = cadence or Cadence()
        self._decide_on_growth = self.cadence.decide_on_demand_growth
        self._maintain_each = self.cadence.maintain_each_iteration
        self._demand_trigger: int | None = None
        #: The clock follows each step's work (an arm with a prefill clock, or a policy that
        #: chooses the clock per step): :meth:`step_frequency` acts, and the policy is told each
        #: step's clock.
        self.per_step_clock = bool(arms.follows_work or self.cadence.chooses_step_clock)
        #: Clock switches made for a step's work (not at a decision).
        self.step_switches = 0
        #: Clocks the device refused or capped (Hz): a step never asks for one again.
        self.refused_freqs_hz: set[float] = set()
        self._last_snapshot: EngineSnapshot | None = None
        #: The policy that raised from a hook (None: none did); ``policy`` is then a DefaultArmPolicy.
        self.failed_policy: Policy | None = None
        if batch_only:
            self.arms.restrict_to_batch_only(self.applied_freq_hz)
        #: The one workload estimate, the policy's (which it reads and saves), fed here only; None
        #: when the policy reads none (then nothing is spent on one).
        self.workload: WorkloadEstimator | None = policy.workload
        #: The policy's beliefs copied on the engine thread for the metrics (never read live).
        self.snapshots = PolicySnapshots()
        self._take_snapshot()

    # ----------------------------------------------------------------- views
    @property
    def current_arm(self) -> Arm | None:
        return None if self.current_index is None else self.arms[self.current_index]

    @property
    def batch_cap(self) -> int:
        arm = self.current_arm
        return self.arms[self.arms.default_index()].max_batch if arm is None else arm.max_batch

    @property
    def tracked_requests(self) -> int:
        return len(self._ledger)

    # ---------------------------------------------------------------- events
    def request_arrived(self, request_id: str, now_s: float, prompt_tokens: int) -> None:
        self.context_model.request_arrived(now_s, prompt_tokens)
        if self.workload is not None:
            self.workload.observe_arrival(now_s, prompt_tokens)
        try:
            self.policy.observe_arrival(now_s, prompt_tokens)
        except Exception as err:
            self._policy_failed("observe_arrival", err)
        self._ledger.add(request_id)

    def decision_due(self, now_s: float, demand: int | None = None) -> bool:
        """Whether the next :meth:`begin_iteration` at ``now_s`` ends the epoch and decides.

        ``demand`` is the requests in the engine (running + waiting) the adapter is about to
        report: a policy that asks for it (``decide_on_demand_growth``) also decides early
        when demand has doubled (plus DEMAND_GROWTH_MIN) since its last decision, after at
        least MIN_EPOCH_ITERATIONS, so a burst is not served for a whole epoch by an arm
        chosen in a lull. Only a decision reads the snapshot's queue contents, so an adapter
        may fill ``waiting_prompt_tokens`` (a sum over the waiting queue) only when this is true.
        """
        return (
            self.current_index is None
            or self._epoch_iterations_left <= 0
            or (self.epoch_s > 0.0 and now_s - self._epoch_start_s >= self.epoch_s)
            or (self._demand_trigger is not None and demand is not None and demand >= self._demand_trigger
                and self.epoch_iterations - self._epoch_iterations_left >= MIN_EPOCH_ITERATIONS)
        )

    def begin_iteration(self, snapshot: EngineSnapshot) -> Arm:
        """Start an engine step; decide a new arm if the epoch is over. Returns the arm."""
        now_s = snapshot.now_s
        self._last_snapshot = snapshot
        if self.snapshots.wanted:
            self._take_snapshot()
        if self._pending:
            self._credit_pending(self.observe_budget)
        if self.decision_due(now_s, snapshot.num_running + snapshot.num_waiting):
            self._decide(snapshot)
        elif self._maintain_each or self._epoch_iterations_left <= MAINTAIN_LEAD_ITERATIONS or self.epoch_s > 0.0:
            try:  # the policy's housekeeping, ahead of the decision
                self.policy.maintain(self._deadline(now_s))
            except Exception as err:
                self._policy_failed("maintain", err)
        self._epoch_iterations_left -= 1
        if not self._in_flight:
            reading = self._read_energy()
            self._energy_mark_j, self._gaps_mark = reading.energy_j, reading.gaps
        assert self.current_index is not None
        self._in_flight.append((now_s, self._slot, self.applied_freq_hz, False))
        return self.arms[self.current_index]

    def step_frequency(self, work: IterationWork) -> None:
        """The step just begun will do ``work``: set the clock it runs at (adapters call this
        between forming a step's batch and running it). A no-op unless the clock follows the
        work (``per_step_clock``): then the arm's prefill clock for a step that is mostly
        prefill, its clock otherwise, or what a policy that ``chooses_step_clock`` says. A
        switch adds the device's switch latency to the step (the emulator charges it); a
        clock the device refuses is switched off as at a decision."""
        if not self.per_step_clock or not self._in_flight or self.batch_only:
            return
        arm = self.arms[self.current_index or 0]
        try:
            target = self.policy.step_frequency(work, arm, self._last_snapshot) \
                if self.cadence.chooses_step_clock and self.failed_policy is None else arm.step_freq_hz(work)
        except Exception as err:
            self._policy_failed("step_frequency", err)
            target = self.arms[self.current_index or 0].freq_hz
        if target in self.refused_freqs_hz:  # refused once (a policy may not know): the arm's own clock
            target = arm.freq_hz
        if target is None or target == self.applied_freq_hz or target in self.refused_freqs_hz:
            return
        before = self.applied_freq_hz
        if not self._apply_frequency(target):
            self._apply_frequency(arm.freq_hz)
        if self.applied_freq_hz != before:
            self.step_switches += 1
            begin_s, slot, _, _ = self._in_flight[-1]
            self._in_flight[-1] = (begin_s, slot, self.applied_freq_hz, True)

    def end_iteration(self, now_s: float, work: IterationWork) -> float:
        """Finish the oldest step in flight; returns seconds the adapter must still wait."""
        if self._in_flight:
            begin_s, slot, step_hz, switched = self._in_flight.popleft()
        else:  # an adapter that missed a begin: charge to the arm in force
            begin_s, slot = now_s, self._slot_for((self.current_context, self.current_index or 0))
            step_hz, switched = self.applied_freq_hz, False
        elapsed_s = max(0.0, now_s - begin_s)
        extra_s = self.device.iteration_done(work, elapsed_s)
        reading = self._read_energy()
        energy_now_j = reading.energy_j
        delta_j = max(0.0, energy_now_j - self._energy_mark_j)
        measured = self._energy_measurable and reading.gaps == self._gaps_mark
        self._energy_mark_j, self._gaps_mark = energy_now_j, reading.gaps
        total_tokens = work.num_tokens or sum(work.tokens_by_request.values())
        if total_tokens <= 0:
            # A step that ran no tokens (vLLM runs one as the engine drains) says nothing of the
            # clock's speed: learnt from, its few ms read as a fast clock, the clock in force
            # whenever the engine emptied (measured in docs/benchmarks.md, live vs simulated).
            return extra_s
        if work.num_prefill_tokens and self.workload is not None:
            self.workload.observe_chunk(work.num_prefill_tokens)
        try:
            if self.per_step_clock and not self.batch_only:  # batch-only arms have no clock to learn
                self.policy.observe_iteration(self._key_of[slot][1], work, elapsed_s + extra_s,
                                              delta_j if measured else None, freq_hz=step_hz, switched=switched)
            else:
                self.policy.observe_iteration(self._key_of[slot][1], work, elapsed_s + extra_s,
                                              delta_j if measured else None)
        except Exception as err:
            self._policy_failed("observe_iteration", err)
        per_token_j = delta_j / total_tokens
        # A request no longer tracked (finished or aborted while this step was in flight: vLLM
        # runs its abort queue between schedule() and update_from_output(); the async scheduler
        # may report a step holding a request that finished in an earlier one) is charged to no
        # one, and no trace is made that nothing would ever remove. Decoding requests are charged
        # lazily (camel_vllm.control.ledger).
        attributed_tokens = self._ledger.charge(work.tokens_by_request, begin_s, slot, per_token_j,
                                                1.0 / total_tokens, measured, not work.num_prefill_tokens)
        self.energy_attributed_j += delta_j if attributed_tokens == total_tokens else per_token_j * attributed_tokens
        return extra_s

    def request_finished(self, request: FinishedRequest) -> RequestOutcome | None:
        """Compute the request's EDP and cost and credit the arms that served it.

        A request whose energy spans an unmeasured interval is reported (``energy_measured``
        False, ``cost`` None) but not credited. Returns ``None`` for a request that never ran
        an iteration (nothing to credit).
        """
        trace = self._ledger.pop(request.request_id)
        if trace is None or not trace.tokens_by_slot:
            return None
        if self.workload is not None:
            self.workload.observe_finished(request.prompt_tokens, request.output_tokens)
        latency_s = request.latency_s
        served = sum(trace.tokens_by_slot.values())
        shares = {self._key_of[slot]: tokens / served for slot, tokens in trace.tokens_by_slot.items()}
        cost: float | None = None
        if trace.unmeasured:  # reported below, never credited (see the module docstring)
            self.unmeasured_requests += 1
        else:
            cost = self.cost(trace.energy_j, latency_s, request)
            if self.observe_budget > 0:
                self._pending.extend((arm_index, context, cost, share)
                                     for (context, arm_index), share in shares.items())
            else:
                try:
                    for (context, arm_index), share in shares.items():
                        self.policy.observe(arm_index, context, cost, share)
                except Exception as err:
                    self._policy_failed("observe", err)
        outcome = RequestOutcome(
            request=request,
            energy_j=trace.energy_j,
            edp_js=trace.energy_j * latency_s,
            cost=cost,
            arm_shares=shares,
            iteration_shares=trace.iteration_shares,
            decode_shares=trace.decode_shares,
            decode_steps=trace.decode_steps,
            first_scheduled_s=trace.first_s,
            energy_measured=not trace.unmeasured,
        )
        try:
            self.policy.observe_outcome(outcome)
        except Exception as err:
            self._policy_failed("observe_outcome", err)
        self.updates += 1
        if self.snapshots.read_at_all and not self._ledger:  # drained: the beliefs an idle engine shows
            self._take_snapshot()
        for listener in self.listeners:
            listener.on_outcome(outcome)
        if self.state_store is not None and self.updates % self.state_save_every == 0:
            self._save_state()
        return outcome

    def request_aborted(self, request_id: str) -> None:
        """Forget an aborted request: its partial cost says nothing about an arm."""
        self._ledger.pop(request_id)

    def close(self) -> None:
        """Save learned state, restore the device and close listeners. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # Listeners close first so their last device reading (energy, clock) sees the device
        # still open; each is guarded so a broken one cannot keep the device unrestored.
        try:
            self._credit_pending(None)
            if self.snapshots.read_at_all:  # the beliefs the metrics write last
                self._take_snapshot()
            if self.state_store is not None:
                self._save_state()
            for listener in self.listeners:
                try:
                    listener.close()
                except Exception:
                    logger.exception("camel: closing listener %r failed", listener)
        finally:
            self.device.close()

    # --------------------------------------------------------------- internals
    def _deadline(self, now_s: float) -> Deadline:
        """How far off the next decision is at a step begun at ``now_s`` (before this step counts)."""
        seconds_left = self.epoch_s - (now_s - self._epoch_start_s) if self.epoch_s > 0.0 else math.inf
        return Deadline(self._epoch_iterations_left, seconds_left)

    def _decide(self, snapshot: EngineSnapshot) -> None:
        context = self.context_model.context(snapshot)
        if snapshot.running_output_tokens and self.workload is not None:
            self.workload.observe_running(snapshot.num_running, snapshot.running_output_tokens,
                                          snapshot.running_output_tokens_sq)
        previous_freq_hz = self.applied_freq_hz
        # Each refused frequency is switched off, so this ends within len(frequencies) tries.
        for _ in range(len(self.arms.frequencies_hz) + 1):
            available = self.arms.available_indices()
            index = self._select(DecisionInput(context, available, self.current_index, snapshot,
                                               self.epoch_iterations, self.epoch_s, self.cost, self.workload))
            if self._apply_frequency(self.arms[index].freq_hz):
                break
        self.current_index = index
        self.current_context = context
        self._slot = self._slot_for((context, index))
        self.decisions += 1
        self.pulls[index] += 1
        self._epoch_iterations_left = self.epoch_iterations
        self._epoch_start_s = snapshot.now_s
        if self._decide_on_growth:
            self._demand_trigger = 2 * (snapshot.num_running + snapshot.num_waiting) + DEMAND_GROWTH_MIN
        switched = self.applied_freq_hz != previous_freq_hz and previous_freq_hz is not None
        if switched:
            self.frequency_switches += 1
        decision = Decision(
            number=self.decisions,
            now_s=snapshot.now_s,
            context=context,
            arm_index=index,
            arm=self.arms[index],
            applied_freq_hz=self.applied_freq_hz,
            frequency_switched=switched,
        )
        for listener in self.listeners:
            listener.on_decision(decision)

    def _select(self, decision: DecisionInput) -> int:
        """The policy's choice among ``decision.available``; the default arm if the policy fails
        (raises, or names an arm that is not available)."""
        try:
            index = self.policy.select(decision)
            if index not in decision.available:
                raise RuntimeError(f"chose arm {index!r}, which is not among the available arms "
                                   f"{list(decision.available)}")
            return int(index)
        except Exception as err:
            self._policy_failed("select", err)
            return self.policy.select(decision)

    def _policy_failed(self, hook: str, err: Exception) -> None:
        """The policy raised from ``hook``: one line, ``camel_device_errors_total{kind="policy"}``,
        and the default arm from the next iteration on (the failed policy is never called again)."""
        logger.error("camel: policy %s failed in %s: %s: %s; serving with the default arm from now on",
                     self.policy.name, hook, type(err).__name__, err)
        logger.debug("camel: where policy %s failed", self.policy.name, exc_info=err)
        self.failed_policy = self.policy
        self.policy = DefaultArmPolicy(self.arms)
        self._decide_on_growth = self._maintain_each = False
        self._demand_trigger = None
        self._pending.clear()
        self._epoch_iterations_left = 0  # decide (the default arm) at the next iteration
        self._device_error("policy")

    def _take_snapshot(self) -> None:
        """Copy the policy's beliefs for the metrics (:class:`~camel_vllm.control.snapshots.PolicySnapshots`)."""
        try:
            self.snapshots.take(self.policy)
        except Exception as err:
            self._policy_failed("estimates", err)
            self.snapshots.take(self.policy)

    def _credit_pending(self, limit: int | None) -> None:
        """Hand up to ``limit`` waiting credits (all if None) to the policy, oldest first."""
        pending, observe = self._pending, self.policy.observe
        count = len(pending) if limit is None else min(limit, len(pending))
        try:
            for _ in range(count):
                arm_index, context, cost, weight = pending.popleft()
                observe(arm_index, context, cost, weight)
        except Exception as err:
            self._policy_failed("observe", err)

    def _read_energy(self) -> EnergyReading:
        """The device's counter with its gap count; a new episode of failing reads is counted."""
        reading = self._energy_reading() if self._energy_reading is not None else EnergyReading(self.device.energy_j())
        if reading.failing > self._failing_seen:
            for _ in range(reading.failing - self._failing_seen):
                self._device_error("sensor")
            self._failing_seen = reading.failing
        return reading

    def report_device_error(self, kind: str, line: str) -> None:
        """Log ``line`` (one warning) and count ``kind`` in ``camel_device_errors_total``."""
        logger.warning("%s", line)
        self._device_error(kind)

    def _slot_for(self, key: tuple[Context, int]) -> int:
        slot = self._slot_of.get(key)
        if slot is None:
            slot = self._slot_of[key] = len(self._key_of)
            self._key_of.append(key)
        return slot

    def _apply_frequency(self, freq_hz: float | None) -> bool:
        """Set the clock for an arm. False if the arm turned out unavailable (choose again)."""
        if self.batch_only or freq_hz is None or freq_hz == self.applied_freq_hz:
            return True
        try:
            applied_hz = self.device.set_frequency_hz(freq_hz)
        except DevicePermissionError as err:
            logger.warning("camel: %s; continuing with batch-only arms", err)
            self._device_error("permission")
            self.batch_only = True
            self.arms.restrict_to_batch_only(self.applied_freq_hz)
            return False
        except DeviceError as err:
            logger.warning("camel: setting %.0f Hz failed (%s); that frequency is now unavailable", freq_hz, err)
            self._device_error("set_frequency")
            self.arms.disable_frequency(freq_hz)
            self.refused_freqs_hz.add(freq_hz)
            return False
        self.applied_freq_hz = applied_hz
        # another step read back: the device is capping us (nvpmodel, thermal, power limit)
        if not same_frequency(applied_hz, freq_hz):
            logger.warning(
                "camel: asked for %.2f MHz, device runs %.2f MHz (power-mode or thermal cap); "
                "arms at %.2f MHz are now unavailable",
                freq_hz / 1e6, applied_hz / 1e6, freq_hz / 1e6,
            )
            self._device_error("frequency_mismatch")
            self.arms.disable_frequency(freq_hz)
            self.refused_freqs_hz.add(freq_hz)
            return False
        return True

    def _device_error(self, kind: str) -> None:
        for listener in self.listeners:
            listener.on_device_error(kind)

    def _save_state(self) -> None:
        assert self.state_store is not None
        if self.failed_policy is not None:
            return  # a policy that failed may hold what made it fail: the file keeps the last good state
        try:
            self.state_store.save(self.policy)
        except OSError as err:
            logger.warning("camel: saving learned state failed: %s", err)
            self._device_error("state_save")
        except Exception as err:  # the policy's state_dict raised (or gave a value JSON refuses)
            self._policy_failed("state_dict", err)
