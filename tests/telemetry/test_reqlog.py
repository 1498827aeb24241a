"""The request log: record fields, rotation, never blocking, drop counting, flush on close."""

from __future__ import annotations

import json
import threading

import pytest

from camel_vllm.core.events import Context, FinishedRequest, RequestOutcome
from camel_vllm.devices.base import DeviceInfo
from camel_vllm.telemetry.reqlog import RequestLog, read_request_log, rotated_paths

INFO = DeviceInfo(kind="emulated", name="emulated orin", energy_source="emulated",
                  energy_method="roofline-model", profile="orin-agx-32gb",
                  extra={"model_profile": "llama-3.2-1b"})


def outcome(i: int, shares=None, iteration_shares=8.0) -> RequestOutcome:
    req = FinishedRequest(request_id=f"r{i}", arrival_s=1.0, finish_s=3.5, prompt_tokens=100,
                          output_tokens=20, first_token_s=1.5)
    return RequestOutcome(request=req, energy_j=2.0, edp_js=5.0, cost=1.6,
                          arm_shares=shares if shares is not None else {(Context(0), 1): 1.0},
                          iteration_shares=iteration_shares)


def test_record_fields_and_labels(tmp_path):
    path = str(tmp_path / "req.jsonl")
    log = RequestLog(path, device_info=INFO, arm_labels=["306/4", "930.75/28"])
    log.on_outcome(outcome(0, {(Context(0), 0): 0.25, (Context(2), 0): 0.25, (Context(2), 1): 0.5}))
    log.close()
    (rec,) = list(read_request_log(path))
    assert rec["request_id"] == "r0"
    assert rec["arms"] == {"306/4": 0.5, "930.75/28": 0.5}
    assert rec["contexts"] == {"0": 0.25, "2": 0.75}
    assert rec["latency_s"] == pytest.approx(2.5) and rec["ttft_s"] == pytest.approx(0.5)
    assert rec["prompt_tokens"] == 100 and rec["output_tokens"] == 20
    assert rec["energy_j"] == 2.0 and rec["edp_js"] == 5.0
    assert rec["emulated"] is True and rec["device_profile"] == "orin-agx-32gb"
    assert rec["model_profile"] == "llama-3.2-1b"
    assert rec["iteration_shares"] == 8.0 and rec["mean_batch"] == 2.5  # 20 output tokens / 8 shares
    last = json.loads(open(path).read().splitlines()[-1])
    assert last == {"type": "summary", "written": 1, "dropped": 0, "rotations": 0, "write_errors": 0}


def test_without_labels_arms_are_indexed(tmp_path):
    path = str(tmp_path / "req.jsonl")
    log = RequestLog(path, device_info=INFO)
    log.on_outcome(outcome(0))
    log.on_outcome(outcome(1, iteration_shares=None))  # a producer that does not track shares
    log.close()
    first, second = read_request_log(path)
    assert first["arms"] == {"arm1": 1.0}
    assert second["iteration_shares"] is None and second["mean_batch"] is None


def test_rotation_keeps_n_files_and_reads_in_order(tmp_path):
    path = str(tmp_path / "req.jsonl")
    log = RequestLog(path, device_info=INFO, max_bytes=2000, backups=2)
    for i in range(40):
        log.on_outcome(outcome(i))
    log.close()
    assert log.rotations >= 3
    assert rotated_paths(path) == [path + ".2", path + ".1", path]
    assert not (tmp_path / "req.jsonl.3").exists()
    ids = [r["request_id"] for r in read_request_log(path, include_rotated=True)]
    # the oldest files were discarded; what remains is the newest records, in order
    assert ids == [f"r{i}" for i in range(40 - len(ids), 40)]


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    path = str(tmp_path / "req.jsonl")
    log = RequestLog(path, device_info=INFO, queue_size=2)
    gate = threading.Event()
    original = log.record

    def slow_record(o):  # hold the writer so the queue fills up
        gate.wait(5)
        return original(o)

    log.record = slow_record
    for i in range(50):
        log.on_outcome(outcome(i))  # must return at once even though the writer is stuck
    assert log.dropped >= 45
    gate.set()
    log.close()
    records = list(read_request_log(path))
    assert len(records) + log.dropped == 50
    assert json.loads(open(path).read().splitlines()[-1])["dropped"] == log.dropped


def test_close_flushes_and_is_idempotent(tmp_path):
    path = str(tmp_path / "req.jsonl")
    log = RequestLog(path, device_info=INFO)
    for i in range(200):
        log.on_outcome(outcome(i))
    log.close()
    log.close()
    assert len(list(read_request_log(path))) == 200
    log.on_outcome(outcome(999))  # after close: counted, not written, no error
    assert log.dropped == 1


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "req.jsonl"
    path.write_text('{"type": "request", "request_id": "a"}\nnot json\n{"request_id": "b"}\n')
    with pytest.raises(ValueError, match=r"req.jsonl:2"):
        list(read_request_log(str(path)))
    path.write_text('{"request_id": "a"}\n{"request_id": "b"')  # killed mid-write
    assert [r["request_id"] for r in read_request_log(str(path))] == ["a"]


def test_simulated_run_logs_every_request_with_arm_labels(tmp_path):
    """End to end: the simulator drives the real controller; the log matches its outcomes."""
    from camel_vllm.bench.sim import SimSetup, emulated_device
    from camel_vllm.core.config import CamelConfig
    from camel_vllm.sim.engine import SimEngine, VirtualClock
    from camel_vllm.traces.base import TraceRequest
    from camel_vllm.wiring.build import EngineLimits, build_controller

    config = SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b",
                           base=CamelConfig(policy="static", policy_params={"arm": [612, 8]})).config
    clock = VirtualClock()
    device = emulated_device(config, clock)
    controller = build_controller(config, EngineLimits(28), device=device, clock=clock, with_metrics=False)
    path = str(tmp_path / "req.jsonl")
    log = RequestLog(path, device_info=device.info(), arm_labels=[a.label for a in controller.arms.arms])
    controller.listeners.append(log)
    requests = [TraceRequest(f"q{i}", 0.5 * i, 50 + 10 * i, 5 + i) for i in range(12)]
    run = SimEngine(controller, clock, requests).run()
    controller.close()
    records = list(read_request_log(path))
    assert len(records) == len(run.records) == 12
    assert all(r["arms"] == {"612/8": 1.0} for r in records)
    assert all(r["emulated"] and r["device_profile"] == "orin-agx-32gb" for r in records)
    # every request paid at least its prefill iteration's share, at most one share per token
    assert all(0.5 < r["iteration_shares"] <= r["prompt_tokens"] + r["output_tokens"] for r in records)
    assert all(r["mean_batch"] == pytest.approx(r["output_tokens"] / r["iteration_shares"], rel=1e-3)
               for r in records)
    by_id = {r.request_id: r for r in run.records}
    for rec in records:
        assert rec["energy_j"] == pytest.approx(by_id[rec["request_id"]].energy_j)
        assert rec["output_tokens"] == 5 + int(rec["request_id"][1:])
