"""Real vLLM (CPU build) serving the tiny model with camel-vllm's scheduler on the emulated Orin.

Two launches, each sending the first 50 rows of the Azure conversation trace (prompts and
outputs clipped to the tiny model) at once:

- ``vllm serve MODEL --scheduler camel`` through the ``vllm`` console script (the plugin's
  flag; see camel_vllm/testing/vllm_server.py for the one metadata shim the CPU build needs);
- ``--scheduler-cls camel_vllm.CamelScheduler`` through vLLM's API-server module.

Every request must come back complete, and the scheduler's iteration log must show that no
request was admitted while the running count was at the arm's batch cap.
"""

from __future__ import annotations

import json


from camel_vllm.testing.vllm_server import read_iteration_log, send_all, start_server, trace_requests

NUM_REQUESTS = 50
MAX_NUM_SEQS = 16
#: Short epochs so that several arms (and batch caps) are tried within 50 requests: camel-ts explores
#: caps from its first epoch, while camel (the model-based default) holds the default arm through its
#: warm-up; camel itself is served live in test_metrics_live.py.
CAMEL = {"camel": {"device": "emulated", "device_profile": "orin-agx-32gb", "policy": "camel-ts",
                   "epoch_iterations": 4, "seed": 1}}


def _serve_trace(model_dir, tmp_path, launcher: str, scheduler_args: list[str]) -> tuple[list[dict], list[dict], str]:
    iteration_log = tmp_path / "iterations.jsonl"
    args = [*scheduler_args, "--max-num-seqs", str(MAX_NUM_SEQS), "--additional-config", json.dumps(CAMEL)]
    requests = trace_requests(NUM_REQUESTS)
    with start_server(
        model_dir, args, env={"CAMEL_VLLM_ITERATION_LOG": str(iteration_log)}, launcher=launcher, log_dir=tmp_path,
    ) as server:
        responses = send_all(server, requests)
        log = server.log()
    for request, response in zip(requests, responses, strict=False):
        assert response["choices"][0]["finish_reason"] == "length"
        assert response["usage"]["completion_tokens"] == request.output_tokens
        assert response["usage"]["prompt_tokens"] == request.prompt_tokens
    return responses, read_iteration_log(iteration_log), log


def _check_admission(rows: list[dict]) -> None:
    assert rows, "the scheduler wrote no iteration log"
    for row in rows:
        if row["admitted"] > 0:
            assert row["running_after"] <= row["batch_cap"], row
        # Lowering the cap never preempts: running requests drain, nothing new comes in.
        assert row["running_after"] <= max(row["running_before"], row["batch_cap"]), row
        assert 1 <= row["batch_cap"] <= MAX_NUM_SEQS, row
    caps = {row["batch_cap"] for row in rows}
    assert len(caps) >= 2, f"only one batch cap was tried: {caps}"
    # The cap did bind at some point (otherwise the check above says nothing).
    assert any(row["running_after"] == row["batch_cap"] for row in rows)


def test_vllm_serve_scheduler_camel(tiny_model_dir, tmp_path):
    _, rows, log = _serve_trace(tiny_model_dir, tmp_path, "vllm", ["--scheduler", "camel"])
    _check_admission(rows)
    assert "'scheduler_cls': 'camel_vllm.CamelScheduler'" in log
    assert "camel: scheduler ready (CamelScheduler" in log
    # Emulated figures are labelled: the emulator slowed iterations at low clocks.
    assert any(row["extra_s"] > 0 for row in rows)


def test_vllm_scheduler_cls(tiny_model_dir, tmp_path):
    _, rows, log = _serve_trace(
        tiny_model_dir, tmp_path, "api-server", ["--scheduler-cls", "camel_vllm.CamelScheduler"]
    )
    _check_admission(rows)
    assert "camel: scheduler ready (CamelScheduler" in log
