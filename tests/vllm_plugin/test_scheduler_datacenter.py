"""``CamelScheduler`` at datacenter size, in process: 256 sequences and the emulated H100's 161 arms.

vLLM's real scheduler, sync and async (the GPU default), driven as an engine core drives it with
made-up tokens (:func:`camel_vllm.testing.in_process.serve`); the ``camel`` policy past its warm-up.
The checks are the small in-process tests' (tests/vllm_plugin/test_scheduler.py) at this size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camel_vllm.testing.in_process import add_requests, build_scheduler, serve
from camel_vllm.testing.vllm_server import TraceRequest
from camel_vllm.vllm_plugin.scheduler import ITERATION_LOG_ENV, CamelAsyncScheduler, CamelScheduler

MAX_NUM_SEQS = 256
REQUESTS = [TraceRequest(prompt_tokens=64 + (97 * i) % 448, output_tokens=8 + (13 * i) % 57) for i in range(600)]


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
def test_camel_serves_every_request_at_datacenter_size(tiny_model_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, async_scheduling: bool) -> None:
    log_path = tmp_path / "iterations.jsonl"
    monkeypatch.setenv(ITERATION_LOG_ENV, str(log_path))
    camel = {"camel": {"device": "emulated", "device_profile": "h100-sxm", "model_profile": "llama-3.1-8b",
                       "policy": "camel", "seed": 0, "epoch_s": 0, "epoch_iterations": 8}}
    scheduler = build_scheduler(CamelScheduler, str(tiny_model_dir), camel, max_num_seqs=MAX_NUM_SEQS,
                                max_num_batched_tokens=8192, num_blocks=20_000, async_scheduling=async_scheduling)
    try:
        assert isinstance(scheduler, CamelAsyncScheduler) is async_scheduling
        controller = scheduler.controller
        # 12 of the H100's 110 clocks x 7 caps up to 256, and the 11 x 7 whose prefill steps run at the top clock
        assert len(controller.arms) == 84 + 77 and controller.per_step_clock
        add_requests(scheduler, REQUESTS, "dc")
        steps, _ = serve(scheduler, queue_size=2 if async_scheduling else 1, max_steps=20_000)
        assert controller.updates == len(REQUESTS) and controller.tracked_requests == 0
        assert controller.policy.model_decisions > 0  # past the warm-up: the model chose arms
        rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
        # a lowered cap admits nobody until the running drain below it (nothing is preempted)
        assert len(rows) == len(steps)
        assert all(row["running_after"] <= max(row["batch_cap"], row["running_before"]) for row in rows)
        assert max(len(step) for step in steps) > 37  # batches beyond the smallest cap did form
    finally:
        scheduler.shutdown()


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
def test_prefill_steps_run_at_their_own_clock_at_datacenter_size(tiny_model_dir: Path, async_scheduling: bool) -> None:
    """A static arm whose prefill steps run at the top clock: the controller switches the emulated
    H100 up for each step that is mostly prefill and back down for decode steps, and every
    request is still served and credited once."""
    camel = {"camel": {"device": "emulated", "device_profile": "h100-sxm", "model_profile": "llama-3.1-8b",
                       "policy": "static", "policy_params": {"arm": [660, 256, 1980]}}}
    scheduler = build_scheduler(CamelScheduler, str(tiny_model_dir), camel, max_num_seqs=MAX_NUM_SEQS,
                                max_num_batched_tokens=8192, num_blocks=20_000, async_scheduling=async_scheduling)
    try:
        controller = scheduler.controller
        assert controller.per_step_clock and controller.current_arm is None
        add_requests(scheduler, REQUESTS[:300], "pf")
        steps, _ = serve(scheduler, queue_size=2 if async_scheduling else 1, max_steps=20_000)
        assert controller.current_arm is not None and controller.current_arm.label == "660/256/1980"
        assert controller.updates == 300 and controller.tracked_requests == 0
        assert controller.step_switches >= 2  # up for the prefill steps, down for the decode steps
        assert controller.device.switches == controller.step_switches + controller.frequency_switches
    finally:
        scheduler.shutdown()
