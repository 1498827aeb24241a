"""``CamelScheduler`` in-process (vLLM's real scheduler, no model): aborts mid-step leave nothing
behind, and the ``default`` policy admits what stock vLLM admits at any ``--max-num-seqs``.

vLLM's engine core runs its abort queue between ``schedule()`` and ``update_from_output()``
(a client that disconnects mid-step), and the async scheduler may hand back a step holding a
request that finished in an earlier one; both used to leave a per-request trace in the
controller that nothing removed.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import pytest
from vllm.sampling_params import SamplingParams
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request, RequestStatus

from camel_vllm.testing.in_process import build_scheduler
from camel_vllm.vllm_plugin.scheduler import CamelAsyncScheduler, CamelScheduler

BLOCK_SIZE = 16
NUM_BLOCKS = 4000
#: Token 7 is what the made-up model samples; a request that stops on it ends at its first token.
SAMPLED_TOKEN = 7


def _scheduler(cls: type, model_dir: Path, additional_config: dict, *, max_num_seqs: int = 8,
               async_scheduling: bool = False) -> Scheduler:
    return build_scheduler(cls, str(model_dir), additional_config, max_num_seqs=max_num_seqs,
                           max_num_batched_tokens=2048, num_blocks=NUM_BLOCKS, block_size=BLOCK_SIZE,
                           async_scheduling=async_scheduling)


def _request(request_id: str, prompt: int, output: int, *, stop_on_sampled: bool = False) -> Request:
    params = SamplingParams(max_tokens=output, ignore_eos=True,
                            stop_token_ids=[SAMPLED_TOKEN] if stop_on_sampled else None)
    return Request(request_id=request_id, prompt_token_ids=list(range(4, 4 + prompt)), sampling_params=params,
                   pooling_params=None, arrival_time=time.time())


def _model_output(ids: list[str], sampled: set[str]) -> ModelRunnerOutput:
    return ModelRunnerOutput(
        req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)},
        sampled_token_ids=[[SAMPLED_TOKEN] if r in sampled else [] for r in ids],
        logprobs=None, prompt_logprobs_dict={}, pooler_output=[],
    )


def _step(scheduler: Scheduler, abort: list[str] = ()) -> dict[str, int]:
    """One sync engine step; ``abort`` is aborted between schedule() and update_from_output()."""
    output = scheduler.schedule()
    if abort:
        scheduler.finish_requests(list(abort), RequestStatus.FINISHED_ABORTED)
    ids = list(output.num_scheduled_tokens)
    scheduler.update_from_output(output, _model_output(ids, set(ids)))
    return dict(output.num_scheduled_tokens)


def test_request_aborted_mid_step_leaves_no_state(tiny_model_dir: Path) -> None:
    """The issue's reproduction, then thousands of abort-mid-step cycles beside normal traffic."""
    scheduler = _scheduler(CamelScheduler, tiny_model_dir, {"camel": {"device": "emulated", "policy": "camel"}})
    controller = scheduler.controller
    try:
        scheduler.add_request(_request("c", 20, 5))
        assert "c" in _step(scheduler, abort=["c"])  # scheduled, then aborted before its output came back
        assert scheduler.requests == {}
        assert controller.tracked_requests == 0

        finished_before = controller.updates
        for cycle in range(2000):
            scheduler.add_request(_request(f"a{cycle}", 8 + cycle % 30, 4))   # aborted mid-step
            scheduler.add_request(_request(f"k{cycle}", 8 + cycle % 17, 2))   # served to the end
            scheduled = _step(scheduler, abort=[f"a{cycle}"])
            assert f"a{cycle}" in scheduled
            while f"k{cycle}" in scheduler.requests:
                _step(scheduler)
            assert controller.tracked_requests == len(scheduler.requests) == 0
        assert controller.updates - finished_before == 2000  # every served request was credited
        assert not scheduler._camel_first_token_s and not scheduler._camel_pending
    finally:
        scheduler.shutdown()


def test_async_step_holding_a_request_finished_earlier_leaves_no_state(tiny_model_dir: Path) -> None:
    """Async scheduling: step N+1 is scheduled before step N's output; a request that stops at
    its first token in step N is still in step N+1's work when that step comes back."""
    scheduler = _scheduler(CamelScheduler, tiny_model_dir, {"camel": {"device": "emulated", "policy": "camel"}},
                           async_scheduling=True)
    assert isinstance(scheduler, CamelAsyncScheduler)
    controller = scheduler.controller
    try:
        for i in range(300):
            scheduler.add_request(_request(f"r{i}", 10 + i % 40, 6, stop_on_sampled=i % 2 == 0))
        in_flight: deque = deque()
        over_scheduled = 0
        while scheduler.has_requests() or in_flight:
            if scheduler.has_requests():
                output = scheduler.schedule()
                sampled = {r for r in output.num_scheduled_tokens
                           if scheduler.requests[r].num_computed_tokens >= scheduler.requests[r].num_prompt_tokens}
                in_flight.appendleft((output, sampled))
                if len(in_flight) < 2 and scheduler.has_requests():
                    continue
            output, sampled = in_flight.pop()
            over_scheduled += sum(1 for r in output.num_scheduled_tokens if r not in scheduler.requests)
            ids = list(output.num_scheduled_tokens)
            scheduler.update_from_output(output, _model_output(ids, sampled))
        assert over_scheduled > 0  # the case under test did happen
        assert controller.updates == 300
        assert controller.tracked_requests == 0 and scheduler.requests == {}
    finally:
        scheduler.shutdown()


def _admitted_per_step(scheduler: Scheduler, n: int) -> list[int]:
    for i in range(n):
        scheduler.add_request(_request(f"r{i}", 12, 3))
    admitted: list[int] = []
    while scheduler.has_unfinished_requests():
        output = scheduler.schedule()
        admitted.append(len(output.scheduled_new_reqs))
        ids = list(output.num_scheduled_tokens)
        scheduler.update_from_output(output, _model_output(ids, set(ids)))
    return admitted


def test_default_policy_admits_what_stock_vllm_admits_above_28_sequences(tiny_model_dir: Path) -> None:
    """``--max-num-seqs 64``: stock admits 64 at once; camel's ``default`` arm is the engine's own
    limit (it used to be Camel's 28), and ``auto`` caps span up to it."""
    stock = _admitted_per_step(_scheduler(Scheduler, tiny_model_dir, {}, max_num_seqs=64), 100)
    assert stock[0] == 64
    camel = _scheduler(CamelScheduler, tiny_model_dir, {"camel": {"device": "emulated", "policy": "default"}},
                       max_num_seqs=64)
    try:
        assert camel.controller.arms.batch_sizes == (9, 18, 27, 37, 46, 55, 64)
        assert _admitted_per_step(camel, 100) == stock
    finally:
        camel.shutdown()


def test_iteration_log_that_is_a_fifo_is_refused_at_start(tiny_model_dir: Path, tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    import os
    import signal

    from camel_vllm.vllm_plugin.scheduler import ITERATION_LOG_ENV

    fifo = tmp_path / "iterations.jsonl"
    os.mkfifo(fifo)
    monkeypatch.setenv(ITERATION_LOG_ENV, str(fifo))

    def too_long(signum, frame):
        raise TimeoutError("opening the iteration log blocked (a FIFO with no reader)")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(60)
    try:
        with pytest.raises(SystemExit) as exit_:
            _scheduler(CamelScheduler, tiny_model_dir, {"camel": {"device": "emulated"}})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f'camel config: {ITERATION_LOG_ENV}="{fifo}": is not a regular file (a FIFO, socket or device)')
