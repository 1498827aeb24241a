"""``CamelScheduler``: vLLM's scheduler with camel-vllm's controller between iterations.

A thin adapter: it turns vLLM's scheduler events into the controller's plain events
(:mod:`camel_vllm.control.controller`) and applies the arm the controller returns.

- ``add_request`` -> ``controller.request_arrived``;
- ``schedule``: snapshot (running, waiting, waiting prompt tokens) -> ``begin_iteration`` ->
  the arm's batch cap becomes vLLM's admission cap ``max_num_active_reqs`` (never above
  its start-up value, ``--max-num-active-seqs`` or else ``--max-num-seqs``, which is also
  where the arms end; lowering it never preempts: running requests drain) -> vLLM schedules;
- ``update_from_output``: the iteration's tokens per request (prefill chunks, decode
  steps, decode context) -> ``end_iteration``; the emulator's modelled slowdown is slept
  here, inside the step, so clients see it; finished requests -> ``request_finished``;
- ``finish_requests`` (aborts from outside) -> ``request_aborted``;
- ``shutdown`` (normal exit; SIGTERM, which vLLM's engine core turns into ``SystemExit``
  and ``EngineCore.shutdown`` -> ``scheduler.shutdown``; engine errors take the same
  ``finally``) -> ``controller.close()``, which saves state and restores the device;
  ``atexit`` backstops. SIGTERM/SIGINT also restore the device at once from a handler
  chained before vLLM's, and the plugin makes the API server wait for the engine core
  instead of killing it right away (:func:`camel_vllm.vllm_plugin.plugin.give_engine_core_shutdown_grace`).

``CamelScheduler(...)`` returns a ``CamelAsyncScheduler`` (on vLLM's ``AsyncScheduler``) when
``vllm_config.scheduler_config.async_scheduling`` is on (the GPU default), so
``--scheduler-cls camel_vllm.CamelScheduler`` fits both step loops.

Times given to the controller are ``time.time()``: vLLM stamps ``Request.arrival_time``
with it in the API server. The emulated device's own clock is ``time.monotonic``.

Set ``CAMEL_VLLM_ITERATION_LOG=PATH`` to write one JSON line per iteration (running
requests before and after scheduling, requests admitted, the batch cap in force, the
controller's wall and thread-CPU time in ns, tokens): the integration tests check admission
against it and ``benchmarks/overhead.py`` replays it. Lines are buffered and flushed each
time the engine runs out of requests and at shutdown. What the log and the adapter cost a
step is measured in docs/vllm-integration.md ("Overhead").
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import IO, Any

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from camel_vllm.control.controller import Controller
from camel_vllm.core.config import CamelConfig, ConfigError, writable_file
from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork
from camel_vllm.wiring.build import EngineLimits, build_controller

logger = logging.getLogger("vllm.camel")

#: Environment variable naming the per-iteration debug log (JSON lines); unset: off.
ITERATION_LOG_ENV = "CAMEL_VLLM_ITERATION_LOG"

#: Statuses of requests that ended without a usable outcome (nothing to learn from).
_NOT_LEARNED = frozenset({RequestStatus.FINISHED_ABORTED, RequestStatus.FINISHED_ERROR})


def data_parallel_rank(vllm_config: Any) -> int:
    """This engine core's DP rank.

    vLLM 0.32 resets ``data_parallel_rank`` to 0 (and the size to 1) in each engine core of a
    non-MoE model (``ParallelConfig.reconfigure_for_independent_dp_rank``); the original
    rank survives as ``data_parallel_index``, set in ``run_engine_core``.
    """
    parallel = vllm_config.parallel_config
    index = getattr(parallel, "data_parallel_index", None)
    if isinstance(index, int):
        return index
    return int(getattr(parallel, "data_parallel_rank", 0) or 0)


def camel_config_for(vllm_config: Any) -> CamelConfig:
    """The camel config from ``additional_config``; metrics port ``metrics_port + DP rank``."""
    config = CamelConfig.from_additional_config(vllm_config.additional_config)
    rank = data_parallel_rank(vllm_config)
    if config.metrics_port and rank > 0:
        config = config.replace(metrics_port=config.metrics_port + rank)
    return config


class _CamelMixin:
    """The adapter proper; mixed in before vLLM's ``Scheduler`` or ``AsyncScheduler``."""

    controller: Controller
    #: True: every event goes straight to vLLM. Set False once ``__init__`` has built the
    #: controller, True again on SIGTERM/SIGINT and at shutdown. The class default covers an
    #: instance whose ``__init__`` never ran: vLLM's own tests build schedulers with
    #: ``object.__new__`` and set only vLLM's attributes; such an object is vLLM's scheduler.
    _camel_stopped: bool = True
    #: vLLM's admission cap (an attribute of vLLM's ``Scheduler``); camel sets it to the arm's cap.
    max_num_active_reqs: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        log_path = os.environ.get(ITERATION_LOG_ENV)
        if log_path:  # checked before the device is opened: a FIFO here would block the engine's start
            try:
                writable_file(ITERATION_LOG_ENV, log_path)
            except ConfigError as err:
                print(str(err), file=sys.stderr, flush=True)
                raise SystemExit(2) from err
        # vLLM's admission cap at start-up (--max-num-active-seqs, default --max-num-seqs): the
        # arms are built up to it and no cap ever goes above it.
        self._camel_max_active = int(self.max_num_active_reqs)
        # One entry per schedule() not yet matched by update_from_output() (FIFO: vLLM's
        # batch queue keeps the order): the work, and the debug-log row (or None).
        self._camel_pending: deque[tuple[IterationWork, dict[str, Any] | None]] = deque()
        self._camel_first_token_s: dict[str, float] = {}
        self._camel_iteration = 0
        self._camel_log: IO[str] | None = None
        self.controller = self._camel_build_controller()
        self._camel_stopped = False
        atexit.register(self.controller.close)
        self._camel_chain_signals()
        if log_path:
            # Block-buffered: a line-buffered file costs a write(2) per iteration. Flushed
            # whenever the engine runs out of requests, and at shutdown.
            self._camel_log = open(log_path, "a", encoding="utf-8")
        logger.info(
            "camel: scheduler ready (%s, %d arms, device %s, max_num_active_reqs %d)",
            type(self).__name__, len(self.controller.arms), self.controller.device.info().name,
            self._camel_max_active,
        )

    def _camel_build_controller(self) -> Controller:
        vllm_config = self.vllm_config  # type: ignore[attr-defined]
        try:
            config = camel_config_for(vllm_config)
            scheduler_config = vllm_config.scheduler_config
            active = getattr(scheduler_config, "max_num_active_seqs", None)  # None: not set (or a vLLM without it)
            limits = EngineLimits(max_num_seqs=int(scheduler_config.max_num_seqs),
                                  max_num_batched_tokens=int(scheduler_config.max_num_batched_tokens),
                                  max_num_active_seqs=None if active is None else int(active))
            return build_controller(config, limits, clock=time.monotonic)
        except ConfigError as err:
            # One clear line (stderr, so it shows even with vLLM's logging off); vLLM then
            # reports that the engine core failed to start.
            print(str(err), file=sys.stderr, flush=True)
            raise SystemExit(2) from None  # the line above is the report: no chained traceback after it

    def _camel_chain_signals(self) -> None:
        """Restore the device as soon as SIGTERM/SIGINT arrives, then run vLLM's handler.

        On SIGTERM vLLM's API server kills the engine core after ``--shutdown-timeout``
        seconds, 0 by default, so ``shutdown()`` may never run; the restore (a few sysfs or
        NVML writes) is done first, in the signal handler, and the controller stops touching
        the device. The engine core's handlers are set before the scheduler is built
        (``run_engine_core``), so they are the ones chained.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)

            def handler(num: int, frame: Any, previous: Any = previous) -> None:
                self._camel_stop()
                if callable(previous):
                    previous(num, frame)
                elif previous == signal.SIG_DFL:
                    signal.signal(num, signal.SIG_DFL)
                    os.kill(os.getpid(), num)

            signal.signal(signum, handler)

    def _camel_stop(self) -> None:
        """Stop applying arms and put the device back now (idempotent, signal-safe enough)."""
        if self._camel_stopped:
            return
        self._camel_stopped = True
        try:
            self.controller.device.restore()
        except Exception as err:  # noqa: BLE001 - reported in one line; close() at shutdown tries again
            logger.error("camel: restoring the device on signal failed (%s: %s); close() at shutdown tries again",
                         type(err).__name__, err)

    # ------------------------------------------------------------------ events
    def add_request(self, request: Request) -> None:
        if self._camel_stopped:
            return super().add_request(request)  # type: ignore[misc]
        is_new = request.request_id not in self.requests  # type: ignore[attr-defined]
        super().add_request(request)  # type: ignore[misc]
        if is_new:
            self.controller.request_arrived(request.request_id, request.arrival_time, request.num_prompt_tokens)

    def schedule(self, *args: Any, **kwargs: Any) -> SchedulerOutput:
        if self._camel_stopped:
            return super().schedule(*args, **kwargs)  # type: ignore[misc]
        waiting = self.waiting  # type: ignore[attr-defined]
        running_before = len(self.running)  # type: ignore[attr-defined]
        logging_on = self._camel_log is not None
        c0 = time.thread_time_ns() if logging_on else 0
        t0 = time.perf_counter_ns()
        now_s = time.time()
        # The prompt mix is read only at decisions (one iteration per epoch): skip the sum over
        # the waiting queue otherwise (kept when the iteration log records it).
        prompt_mix_needed = logging_on or self.controller.decision_due(now_s, running_before + len(waiting))
        if prompt_mix_needed:
            outputs = [r.num_output_tokens for r in self.running]  # type: ignore[attr-defined]
            snapshot = EngineSnapshot(
                now_s=now_s, num_running=running_before, num_waiting=len(waiting),
                waiting_prompt_tokens=sum(r.num_prompt_tokens for r in waiting),
                running_output_tokens=sum(outputs), running_output_tokens_sq=float(sum(k * k for k in outputs)),
            )
        else:
            snapshot = EngineSnapshot(now_s=now_s, num_running=running_before, num_waiting=len(waiting))
        arm = self.controller.begin_iteration(snapshot)
        cap = min(arm.max_batch, self._camel_max_active)
        self.max_num_active_reqs = cap
        controller_ns = time.perf_counter_ns() - t0
        controller_cpu_ns = time.thread_time_ns() - c0 if logging_on else 0
        output = super().schedule(*args, **kwargs)  # type: ignore[misc]
        work = self._camel_work(output)
        if self.controller.per_step_clock:
            # The clock follows the work: set for this step before it runs (with async scheduling
            # the previous step may still be running; its tail then runs at this step's clock).
            self.controller.step_frequency(work)
        row = None
        if self._camel_log is not None:
            row = {
                "iteration": self._camel_iteration,
                "begin_s": now_s,
                "running_before": running_before,
                "waiting": snapshot.num_waiting,
                "waiting_prompt_tokens": snapshot.waiting_prompt_tokens,
                "running_after": len(self.running),  # type: ignore[attr-defined]
                "admitted": len(output.scheduled_new_reqs),
                "batch_cap": cap,
                "arm": arm.label,
                "prefill_tokens": work.num_prefill_tokens,
                "decode_tokens": work.num_decode_tokens,
                "context_tokens": work.context_tokens,
                "begin_ns": controller_ns,
                "begin_cpu_ns": controller_cpu_ns,
                "scheduled_at": time.perf_counter(),
            }
        self._camel_pending.append((work, row))
        self._camel_iteration += 1
        return output

    def _camel_work(self, output: SchedulerOutput) -> IterationWork:
        """Tokens per request, split into prefill and decode (after vLLM's bookkeeping)."""
        requests = self.requests  # type: ignore[attr-defined]
        prefill = decode = context = 0
        scheduled = output.num_scheduled_tokens
        for request_id, tokens in scheduled.items():
            request = requests.get(request_id)
            if request is None:
                continue
            computed_before = request.num_computed_tokens - tokens
            if computed_before < request.num_prompt_tokens:
                prefill += tokens
            else:
                decode += tokens
                context += computed_before
        return IterationWork(
            tokens_by_request=dict(scheduled),
            num_prefill_tokens=prefill,
            num_decode_tokens=decode,
            context_tokens=context,
        )

    def update_from_output(self, scheduler_output: SchedulerOutput, model_runner_output: Any) -> Any:
        if self._camel_stopped:
            return super().update_from_output(scheduler_output, model_runner_output)  # type: ignore[misc]
        work, row = self._camel_pending.popleft() if self._camel_pending else (IterationWork({}, 0, 0), None)
        if row is not None:  # model time of this step (sync engine: schedule -> update)
            row["forward_s"] = time.perf_counter() - row.pop("scheduled_at")
        requests = self.requests  # type: ignore[attr-defined]
        scheduled = [requests[r] for r in scheduler_output.num_scheduled_tokens if r in requests]
        outputs = super().update_from_output(scheduler_output, model_runner_output)  # type: ignore[misc]
        c0 = time.thread_time_ns() if row is not None else 0
        t0 = time.perf_counter_ns()
        end_s = time.time()
        extra_s = self.controller.end_iteration(end_s, work)
        controller_ns = time.perf_counter_ns() - t0
        controller_cpu_ns = time.thread_time_ns() - c0 if row is not None else 0
        if extra_s > 0.0:
            time.sleep(extra_s)
        now_s = time.time()
        c1 = time.thread_time_ns() if row is not None else 0
        t1 = time.perf_counter_ns()
        first_token_s = self._camel_first_token_s
        finished: list[str] = []
        for request in scheduled:
            request_id = request.request_id
            if request_id not in first_token_s and request.num_output_tokens > 0:
                first_token_s[request_id] = now_s
            if request.is_finished():
                self._camel_finished(request, now_s)
                finished.append(request_id)
        controller_ns += time.perf_counter_ns() - t1
        if row is not None and self._camel_log is not None:
            row["end_ns"] = controller_ns
            row["end_cpu_ns"] = controller_cpu_ns + time.thread_time_ns() - c1
            row["extra_s"] = extra_s
            row["end_s"] = end_s
            row["done_s"] = now_s
            row["tokens"] = work.tokens_by_request
            row["finished"] = finished
            self._camel_log.write(json.dumps(row) + "\n")
            if not self.has_unfinished_requests():  # type: ignore[attr-defined]
                self._camel_log.flush()
        return outputs

    def _camel_finished(self, request: Request, now_s: float) -> None:
        first_token_s = self._camel_first_token_s.pop(request.request_id, None)
        if request.status in _NOT_LEARNED:
            self.controller.request_aborted(request.request_id)
            return
        self.controller.request_finished(
            FinishedRequest(
                request_id=request.request_id,
                arrival_s=request.arrival_time,
                finish_s=now_s,
                prompt_tokens=request.num_prompt_tokens,
                output_tokens=request.num_output_tokens,
                first_token_s=first_token_s,
            )
        )

    def finish_requests(self, request_ids: Any, finished_status: RequestStatus) -> list[Request]:
        finished = super().finish_requests(request_ids, finished_status)  # type: ignore[misc]
        if self._camel_stopped:
            return finished
        for request in finished:
            self._camel_first_token_s.pop(request.request_id, None)
            self.controller.request_aborted(request.request_id)
        return finished

    def shutdown(self) -> None:
        self._camel_stopped = True
        try:
            super().shutdown()  # type: ignore[misc]
        finally:
            self.controller.close()
            if self._camel_log is not None:
                self._camel_log.close()
                self._camel_log = None


class CamelScheduler(_CamelMixin, Scheduler):
    """``--scheduler-cls camel_vllm.CamelScheduler``: sync or async by the engine's config."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "CamelScheduler":
        if cls is CamelScheduler:
            vllm_config = kwargs.get("vllm_config", args[0] if args else None)
            if vllm_config is not None and vllm_config.scheduler_config.async_scheduling:
                cls = CamelAsyncScheduler
        return super().__new__(cls)


class CamelAsyncScheduler(CamelScheduler, AsyncScheduler):
    """The same adapter on vLLM's ``AsyncScheduler`` (the next step overlaps the current one)."""
