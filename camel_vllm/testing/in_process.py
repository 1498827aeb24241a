"""vLLM's ``Scheduler`` or ``CamelScheduler`` built in process as an engine core builds it, but
with no engine (the scheduler tests build theirs here too), and a driver that serves requests
through it with made-up tokens: the same steps for every scheduler, so their CPU per step
compares exactly (``benchmarks/overhead.py``).
Needs a real vLLM.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from camel_vllm.testing.vllm_server import TraceRequest

#: In-process schedulers: KV blocks (of 16 tokens) and the per-step token budget. Enough
#: blocks that nothing is preempted; the budget is vLLM's default for this model length.
IN_PROCESS_NUM_BLOCKS = 10_000
IN_PROCESS_BATCHED_TOKENS = 8192


def build_scheduler(cls: type, model: str, additional_config: dict, *, max_num_seqs: int,
                    max_num_batched_tokens: int = IN_PROCESS_BATCHED_TOKENS, num_blocks: int = IN_PROCESS_NUM_BLOCKS,
                    block_size: int = 16, max_model_len: int = 2048, async_scheduling: bool = False,
                    max_num_active_seqs: int | None = None) -> Any:
    """A scheduler of class ``cls`` (vLLM's or camel's) built as an engine core builds it, with a
    one-layer KV cache of ``num_blocks`` blocks and no engine. ``async_scheduling`` False is
    what vLLM's CPU platform sets; True is the GPU default (AsyncScheduler).
    ``max_num_active_seqs`` is vLLM's ``--max-num-active-seqs`` (None: not set)."""
    import torch
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    cache_config = CacheConfig(block_size=block_size, cache_dtype="auto", enable_prefix_caching=False)
    vllm_config = VllmConfig(
        model_config=ModelConfig(model=model, max_model_len=max_model_len, enforce_eager=True),
        scheduler_config=SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                         max_num_active_seqs=max_num_active_seqs,
                                         max_model_len=max_model_len, is_encoder_decoder=False,
                                         enable_chunked_prefill=True),
        cache_config=cache_config, additional_config=additional_config,
    )
    vllm_config.scheduler_config.async_scheduling = async_scheduling
    cache_config.num_gpu_blocks = num_blocks
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
    kv_cache_config = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                                    kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
    return cls(vllm_config=vllm_config, kv_cache_config=kv_cache_config, block_size=block_size,
               structured_output_manager=StructuredOutputManager(vllm_config))


def in_process_scheduler(kind: str, model: str, max_num_seqs: int, max_model_len: int = 2048) -> Any:
    """vLLM's ``Scheduler`` (``stock``) or ``CamelScheduler`` holding the default arm
    (``camel-none``, ``camel-emulated``), built as an engine core builds it but with no engine."""
    from vllm.v1.core.sched.scheduler import Scheduler

    from camel_vllm.vllm_plugin.scheduler import CamelScheduler

    cls, extra = (Scheduler, {}) if kind == "stock" else (
        CamelScheduler, {"camel": {"device": kind.split("-", 1)[1], "policy": "default"}})
    return build_scheduler(cls, model, extra, max_num_seqs=max_num_seqs, max_model_len=max_model_len)


def add_requests(scheduler: Any, requests: Sequence[TraceRequest], tag: str) -> None:
    """Every request, arriving now, with ``ignore_eos`` (each makes exactly its output tokens)."""
    from vllm.sampling_params import SamplingParams
    from vllm.v1.request import Request

    now_s = time.time()
    for i, req in enumerate(requests):
        scheduler.add_request(Request(
            request_id=f"cmpl-{tag}-{i}", prompt_token_ids=list(range(4, 4 + req.prompt_tokens)),
            sampling_params=SamplingParams(max_tokens=req.output_tokens, ignore_eos=True), pooling_params=None,
            arrival_time=now_s,
        ))


def serve(scheduler: Any, *, queue_size: int = 1, max_steps: int = 100_000) -> tuple[list[dict[str, int]], int]:
    """Step ``scheduler`` until every request finished, as an engine core does; returns the
    tokens scheduled per step and the thread CPU ns spent in ``schedule`` + ``update_from_output``.

    ``queue_size`` 1: vLLM's synchronous loop (schedule, run, update); 2: ``EngineCore.
    step_with_batch_queue`` with async scheduling, the next step scheduled before the last one's
    output is handed back. A request samples a token once its prompt is fully scheduled (a
    partial prefill chunk samples nothing); the made-up token is 7.
    """
    from collections import deque

    from vllm.v1.outputs import ModelRunnerOutput

    cpu = time.thread_time_ns
    in_flight: deque = deque()
    steps: list[dict[str, int]] = []
    spent_ns = 0
    while scheduler.has_requests() or in_flight:
        if scheduler.has_requests():
            c0 = cpu()
            output = scheduler.schedule()
            spent_ns += cpu() - c0
            sampled = {r for r in output.num_scheduled_tokens
                       if scheduler.requests[r].num_computed_tokens >= scheduler.requests[r].num_prompt_tokens}
            steps.append(dict(output.num_scheduled_tokens))
            in_flight.appendleft((output, sampled))
            if len(in_flight) < queue_size and (output.total_num_scheduled_tokens > 0 or scheduler.has_requests()):
                continue
        output, sampled = in_flight.pop()
        ids = list(output.num_scheduled_tokens)
        model_output = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)},
                                         sampled_token_ids=[[7] if r in sampled else [] for r in ids], logprobs=None,
                                         prompt_logprobs_dict={}, pooler_output=[])
        c0 = cpu()
        scheduler.update_from_output(output, model_output)
        spent_ns += cpu() - c0
        if len(steps) >= max_steps:
            raise RuntimeError(f"requests never finished ({max_steps} steps)")
    return steps, spent_ns


def scheduler_pass_cpu_ns(scheduler: Any, requests: Sequence[TraceRequest], tag: str,
                          queue_size: int = 1) -> tuple[int, int]:
    """Serve every request to completion (:func:`serve`); returns (steps, thread CPU ns spent in
    ``schedule`` + ``update_from_output``)."""
    add_requests(scheduler, requests, tag)
    steps, spent_ns = serve(scheduler, queue_size=queue_size)
    return len(steps), spent_ns
