"""``CamelScheduler`` driven in-process: vLLM's real scheduler, no engine, no model.

The scheduler under test is the real class on vLLM's real ``Scheduler``; only the model's
output is made up (one token per scheduled request per step), as an engine core would hand
it over. Fast (no engine start-up), so these run in every CI pass.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from vllm.sampling_params import SamplingParams
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request, RequestStatus

from camel_vllm.core.events import RequestOutcome
from camel_vllm.testing.in_process import build_scheduler, serve
from camel_vllm.vllm_plugin.scheduler import ITERATION_LOG_ENV, CamelAsyncScheduler, CamelScheduler

MAX_NUM_SEQS = 8
BLOCK_SIZE = 16
NUM_BLOCKS = 2000
#: (prompt tokens, output tokens) of the requests, all sent at once.
REQUESTS = [(40 + 13 * i, 3 + (7 * i) % 11) for i in range(20)]


def _scheduler(cls: type, model_dir: Path, additional_config: dict, *, async_scheduling: bool = False) -> Scheduler:
    return build_scheduler(cls, str(model_dir), additional_config, max_num_seqs=MAX_NUM_SEQS,
                           max_num_batched_tokens=512, num_blocks=NUM_BLOCKS, block_size=BLOCK_SIZE,
                           async_scheduling=async_scheduling)


def _add_requests(scheduler: Scheduler) -> None:
    """Every request of REQUESTS, all arriving now."""
    now_s = time.time()
    for i, (prompt, output) in enumerate(REQUESTS):
        scheduler.add_request(Request(
            request_id=f"req-{i}", prompt_token_ids=list(range(4, 4 + prompt)),
            sampling_params=SamplingParams(max_tokens=output, ignore_eos=True), pooling_params=None,
            arrival_time=now_s,
        ))


def _model_output(ids: list[str], sampled: set[str]) -> ModelRunnerOutput:
    """What the model runner hands back for a step: token 7 for each request in ``sampled``."""
    return ModelRunnerOutput(
        req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)},
        sampled_token_ids=[[7] if r in sampled else [] for r in ids],
        logprobs=None, prompt_logprobs_dict={}, pooler_output=[],
    )


def _serve(scheduler: Scheduler) -> list[dict[str, int]]:
    """Add every request, step until all finish; returns the tokens scheduled per step."""
    _add_requests(scheduler)
    steps: list[dict[str, int]] = []
    while scheduler.has_unfinished_requests():
        output = scheduler.schedule()
        ids = list(output.num_scheduled_tokens)
        steps.append(dict(output.num_scheduled_tokens))
        scheduler.update_from_output(output, _model_output(ids, sampled=set(ids)))
        assert len(steps) < 1000, "requests never finished"
    return steps


def test_default_arm_schedules_exactly_like_stock_vllm(tiny_model_dir: Path) -> None:
    """Holding the default arm, camel admits and batches exactly as vLLM's own scheduler."""
    stock = _serve(_scheduler(Scheduler, tiny_model_dir, {}))
    camel_scheduler = _scheduler(CamelScheduler, tiny_model_dir, {"camel": {"device": "none", "policy": "default"}})
    try:
        camel = _serve(camel_scheduler)
        assert camel == stock
        assert camel_scheduler.max_num_active_reqs == MAX_NUM_SEQS
        assert camel_scheduler.controller.updates == len(REQUESTS)
        assert camel_scheduler.controller.tracked_requests == 0
    finally:
        camel_scheduler.shutdown()


def test_arms_end_at_the_active_cap(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``--max-num-active-seqs`` below ``--max-num-seqs`` the auto arms end at the active cap
    (before, arms up to ``--max-num-seqs`` 32 all admitted what the cap 6 admits), the default
    arm schedules exactly as stock vLLM with the same caps, and a listed batch size above the
    active cap stops the engine core with one line."""
    def build(cls: type, extra: dict) -> Scheduler:
        return build_scheduler(cls, str(tiny_model_dir), extra, max_num_seqs=32, max_num_active_seqs=6,
                               max_num_batched_tokens=512, num_blocks=NUM_BLOCKS, block_size=BLOCK_SIZE)

    stock = _serve(build(Scheduler, {}))
    assert max(len(step) for step in stock) == 6
    camel_scheduler = build(CamelScheduler, {"camel": {"device": "none", "policy": "default"}})
    try:
        assert camel_scheduler.controller.arms.batch_sizes == (4, 6)
        assert _serve(camel_scheduler) == stock
    finally:
        camel_scheduler.shutdown()
    with pytest.raises(SystemExit) as exit_:
        build(CamelScheduler, {"camel": {"device": "none", "batch_sizes": [4, 8]}})
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "camel config: batch_sizes=[4, 8]: 8 is above --max-num-active-seqs 6"


def test_scheduler_without_camel_init_is_vllms_scheduler(tiny_model_dir: Path) -> None:
    """A ``CamelScheduler`` that holds only vLLM's state schedules as vLLM's own.

    vLLM's tests build schedulers with ``object.__new__`` and set vLLM's attributes by hand
    (``test_abort_request_when_structured_output_fsm_cannot_advance``); camel's overrides used to
    read state only its ``__init__`` sets and raised ``AttributeError`` (found by the vLLM
    conformance suite, tests/vllm_plugin/test_vllm_conformance.py).
    """
    stock = _serve(_scheduler(Scheduler, tiny_model_dir, {}))
    camel = object.__new__(CamelScheduler)
    camel.__dict__.update(_scheduler(Scheduler, tiny_model_dir, {}).__dict__)  # vLLM's state only
    assert not hasattr(camel, "controller")
    assert _serve(camel) == stock
    aborted = Request(request_id="late", prompt_token_ids=[4, 5, 6], pooling_params=None,
                      sampling_params=SamplingParams(max_tokens=2), arrival_time=time.time())
    camel.add_request(aborted)
    assert [r.request_id for r in camel.finish_requests(["late"], RequestStatus.FINISHED_ABORTED)] == ["late"]


def test_iteration_log_is_flushed_when_the_engine_runs_dry(tiny_model_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    log_path = tmp_path / "iterations.jsonl"
    monkeypatch.setenv(ITERATION_LOG_ENV, str(log_path))
    scheduler = _scheduler(CamelScheduler, tiny_model_dir, {"camel": {"device": "emulated", "policy": "default"}})
    try:
        steps = _serve(scheduler)
        # Not shut down: the rows are on disk because the engine ran out of requests.
        rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == len(steps)
        assert [row["tokens"] for row in rows] == steps
        finished = [request_id for row in rows for request_id in row["finished"]]
        assert sorted(finished) == sorted(f"req-{i}" for i in range(len(REQUESTS)))
        assert all(row["running_after"] <= row["batch_cap"] == MAX_NUM_SEQS for row in rows)
    finally:
        scheduler.shutdown()


def _serve_async(scheduler: Scheduler, queue_size: int = 2) -> list[dict[str, int]]:
    """As vLLM's ``EngineCore.step_with_batch_queue`` with async scheduling (two batches in
    flight): :func:`camel_vllm.testing.in_process.serve`."""
    _add_requests(scheduler)
    return serve(scheduler, queue_size=queue_size, max_steps=2000)[0]


def test_async_default_arm_schedules_exactly_like_stock_async_vllm(tiny_model_dir: Path) -> None:
    """With async scheduling (the GPU default) camel is the async adapter and, holding the default
    arm, overlaps and batches exactly as vLLM's ``AsyncScheduler``."""
    stock = _serve_async(_scheduler(AsyncScheduler, tiny_model_dir, {}, async_scheduling=True))
    camel_scheduler = _scheduler(CamelScheduler, tiny_model_dir, {"camel": {"device": "none", "policy": "default"}},
                                 async_scheduling=True)
    try:
        assert isinstance(camel_scheduler, CamelAsyncScheduler)
        camel = _serve_async(camel_scheduler)
        assert camel == stock
        assert camel_scheduler.controller.updates == len(REQUESTS)
        assert camel_scheduler.controller.tracked_requests == 0
    finally:
        camel_scheduler.shutdown()


class _Outcomes:
    """A controller listener that keeps every request outcome."""

    def __init__(self, into: list[RequestOutcome]) -> None:
        self.into = into

    def on_decision(self, decision: object) -> None:
        return None

    def on_outcome(self, outcome: RequestOutcome) -> None:
        self.into.append(outcome)

    def on_device_error(self, kind: str) -> None:
        return None

    def close(self) -> None:
        return None


def test_async_camel_policy_pairs_overlapping_steps(tiny_model_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two steps in flight: every step still ends the controller iteration it began, caps hold, no
    request is lost, and each finished request is charged the energy of the steps that ran it."""
    log_path = tmp_path / "iterations.jsonl"
    monkeypatch.setenv(ITERATION_LOG_ENV, str(log_path))
    scheduler = _scheduler(CamelScheduler, tiny_model_dir,
                           {"camel": {"device": "emulated", "policy": "camel-ts", "epoch_iterations": 2, "seed": 1}},
                           async_scheduling=True)
    outcomes: list[RequestOutcome] = []
    scheduler.controller.listeners.append(_Outcomes(outcomes))
    try:
        steps = _serve_async(scheduler)
        controller = scheduler.controller
        assert controller.updates == len(REQUESTS)
        assert controller.tracked_requests == 0
        assert controller.decisions >= len(steps) // 2 - 1
        assert sorted(o.request.request_id for o in outcomes) == sorted(f"req-{i}" for i in range(len(REQUESTS)))
        assert all(o.energy_j > 0.0 and abs(sum(o.arm_shares.values()) - 1.0) < 1e-9 for o in outcomes)
        assert controller.energy_attributed_j == pytest.approx(sum(o.energy_j for o in outcomes), rel=1e-9)
        rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
        assert [row["tokens"] for row in rows] == steps
        assert all(row["running_after"] <= row["batch_cap"] for row in rows)
        assert len({row["batch_cap"] for row in rows}) > 1  # the policy did move the cap
    finally:
        scheduler.shutdown()
