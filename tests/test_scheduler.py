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
import torch
from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
from vllm.sampling_params import SamplingParams
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request
from vllm.v1.structured_output import StructuredOutputManager

from camel_vllm.vllm_plugin.scheduler import ITERATION_LOG_ENV, CamelScheduler

MAX_NUM_SEQS = 8
BLOCK_SIZE = 16
NUM_BLOCKS = 2000
#: (prompt tokens, output tokens) of the requests, all sent at once.
REQUESTS = [(40 + 13 * i, 3 + (7 * i) % 11) for i in range(20)]


def _scheduler(cls: type, model_dir: Path, additional_config: dict) -> Scheduler:
    model_config = ModelConfig(model=str(model_dir), max_model_len=2048, enforce_eager=True)
    scheduler_config = SchedulerConfig(max_num_seqs=MAX_NUM_SEQS, max_num_batched_tokens=512, max_model_len=2048,
                                       is_encoder_decoder=False, enable_chunked_prefill=True)
    cache_config = CacheConfig(block_size=BLOCK_SIZE, cache_dtype="auto", enable_prefix_caching=False)
    vllm_config = VllmConfig(model_config=model_config, scheduler_config=scheduler_config, cache_config=cache_config,
                             additional_config=additional_config)
    vllm_config.scheduler_config.async_scheduling = False  # as vLLM's CPU platform sets it
    cache_config.num_gpu_blocks = NUM_BLOCKS
    kv_cache_config = KVCacheConfig(
        num_blocks=NUM_BLOCKS, kv_cache_tensors=[],
        kv_cache_groups=[KVCacheGroupSpec(["layer"], FullAttentionSpec(block_size=BLOCK_SIZE, num_kv_heads=1,
                                                                      head_size=1, dtype=torch.float32))],
    )
    return cls(vllm_config=vllm_config, kv_cache_config=kv_cache_config, block_size=BLOCK_SIZE,
               structured_output_manager=StructuredOutputManager(vllm_config))


def _serve(scheduler: Scheduler) -> list[dict[str, int]]:
    """Add every request, step until all finish; returns the tokens scheduled per step."""
    now_s = time.time()
    for i, (prompt, output) in enumerate(REQUESTS):
        scheduler.add_request(Request(
            request_id=f"req-{i}", prompt_token_ids=list(range(4, 4 + prompt)),
            sampling_params=SamplingParams(max_tokens=output, ignore_eos=True), pooling_params=None,
            arrival_time=now_s,
        ))
    steps: list[dict[str, int]] = []
    while scheduler.has_unfinished_requests():
        output = scheduler.schedule()
        ids = list(output.num_scheduled_tokens)
        steps.append(dict(output.num_scheduled_tokens))
        scheduler.update_from_output(output, ModelRunnerOutput(
            req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)}, sampled_token_ids=[[7] for _ in ids],
            logprobs=None, prompt_logprobs_dict={}, pooler_output=[],
        ))
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
