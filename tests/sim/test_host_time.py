"""The live engine's own time per step: fitted from an iteration log, and given to the simulator."""

from __future__ import annotations

import json

import pytest

from camel_vllm.bench.sim import PolicySpec, SimSetup, run_one
from camel_vllm.core.events import IterationWork
from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile
from camel_vllm.devices.emulator.roofline import PerformanceModel
from camel_vllm.sim.engine import EngineConfig
from camel_vllm.sim.host import HostTime, fit_host_time
from camel_vllm.traces.base import Trace, TraceRequest


def _write_log(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _row(begin_s: float, prefill: int, decode: int, *, own_s: float, extra_s: float, tail_s: float) -> dict:
    end_s = begin_s + own_s
    return {"begin_s": begin_s, "end_s": end_s, "done_s": end_s + extra_s + tail_s, "extra_s": extra_s,
            "prefill_tokens": prefill, "decode_tokens": decode}


def test_fit_recovers_the_engines_own_time_tails_and_gaps(tmp_path):
    rows, t = [], 100.0
    for i in range(60):
        prefill = 200 * (i % 3) if i % 4 == 0 else 0
        decode = 1 + i % 5
        own = (0.001 + 0.0002 * prefill + 0.0001 * decode) if prefill else (0.004 + 0.0005 * decode)
        row = _row(t, prefill, decode, own_s=own, extra_s=0.01, tail_s=0.0003)
        rows.append(row)
        t = row["done_s"] + 0.0002  # the engine's loop between steps
    rows.append(_row(t, 0, 0, own_s=0.002, extra_s=0.0, tail_s=0.0))  # the step vLLM runs as it drains
    log = tmp_path / "iterations.jsonl"
    _write_log(log, rows)
    host = fit_host_time(log)
    assert host.steps == 60
    assert host.decode_step_s == pytest.approx(0.004, rel=1e-6)
    assert host.decode_per_token_s == pytest.approx(0.0005, rel=1e-6)
    assert host.step_s == pytest.approx(0.001, rel=1e-6)
    assert host.per_prefill_token_s == pytest.approx(0.0002, rel=1e-6)
    assert host.per_decode_token_s == pytest.approx(0.0001, rel=1e-6)
    assert all(v == pytest.approx(0.0003, abs=1e-9) for v in host.tails_s)
    assert all(v == pytest.approx(0.0002, abs=1e-9) for v in host.gaps_s)
    assert "measured on 60 live steps" in host.describe()


def test_a_log_without_the_timestamps_is_refused_with_file_and_line(tmp_path):
    log = tmp_path / "old.jsonl"
    log.write_text(json.dumps({"begin_s": 1.0, "done_s": 2.0, "extra_s": 0.0, "prefill_tokens": 1,
                               "decode_tokens": 0}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"old.jsonl: line 1 .*end_s"):
        fit_host_time(log)
    _write_log(log, [_row(1.0, 0, 0, own_s=0.001, extra_s=0.0, tail_s=0.0)])
    with pytest.raises(ValueError, match="0 steps with work"):
        fit_host_time(log)


def test_host_time_refuses_negative_or_infinite_figures():
    with pytest.raises(ValueError, match="step_s"):
        HostTime(step_s=-1.0)
    with pytest.raises(ValueError, match="gaps_s"):
        HostTime(gaps_s=(0.1, float("inf")))
    assert not HostTime().active


def _one_request_run(host: HostTime):
    """One request (100-token prompt, 3 output tokens) under the default policy on the emulated
    roofline Orin: the real device model, whose absolute time adds only what the engine's own
    time leaves of the modelled step."""
    setup = SimSetup.make(device_profile="orin-agx-32gb-roofline", seed=0, engine=EngineConfig(host=host))
    trace = Trace("one", (TraceRequest("r", 0.0, 100, 3),))
    return run_one(setup, PolicySpec("default", "default"), trace)


def test_a_step_lasts_the_longer_of_the_model_and_the_engine_then_its_tail_and_gap():
    model = PerformanceModel(load_device_profile("orin-agx-32gb-roofline"), load_model_profile("llama-3.2-1b"))
    top = model.device.max_frequency_hz
    prefill_s = model.iteration_time_s(IterationWork({"r": 100}, 100, 0), top)
    decode_s = [model.iteration_time_s(IterationWork({"r": 1}, 0, 1, context), top) for context in (101, 102)]
    plain = _one_request_run(HostTime())
    assert plain.records[0].finish_s == pytest.approx(prefill_s + sum(decode_s))
    # The engine's own prefill (0.5 s) outlasts the model's; its decode steps (1 ms) do not.
    assert prefill_s < 0.5 and max(decode_s) > 0.001
    run = _one_request_run(HostTime(step_s=0.5, decode_step_s=0.001, tails_s=(0.002,), gaps_s=(0.003,)))
    assert run.records[0].ttft_s == pytest.approx(0.5 + 0.002)
    assert run.records[0].finish_s == pytest.approx(0.502 + sum(0.003 + d + 0.002 for d in decode_s))
    assert run.energy_j > plain.energy_j  # the longer prefill is busy, the gaps idle: more energy
