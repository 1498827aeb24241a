"""Profiles: shipped files load; benchmarks/profile_device.py output round-trips into the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camel_vllm.core.config import CamelConfig
from camel_vllm.core.events import IterationWork
from camel_vllm.devices.emulator.profiles import available_profiles, load_device_profile, load_model_profile
from camel_vllm.devices.emulator.roofline import PerformanceModel
from camel_vllm.devices.registry import make_device
from camel_vllm.devices.sampler import sample_period_s
from tests.bench_scripts import load_benchmark

REPO = Path(__file__).resolve().parents[2]


def profile_device():
    return load_benchmark("profile_device")


def test_shipped_profiles() -> None:
    assert available_profiles("device") == ["h100-sxm", "orin-agx-32gb", "orin-agx-32gb-roofline", "orin-agx-64gb",
                                            "orin-agx-64gb-roofline"]
    assert available_profiles("model") == ["llama-3.1-8b", "llama-3.2-1b", "qwen-2.5-3b"]
    llama = load_model_profile("llama-3.2-1b")
    assert llama.kv_bytes_per_token == 2 * 16 * 8 * 64 * 2


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_dry_run_round_trips(tmp_path: Path, suffix: str, capsys) -> None:
    out = tmp_path / f"measured{suffix}"
    assert profile_device().main([
        "--dry-run", "--out", str(out), "--batches", "1,8", "--contexts", "128,1024",
        "--frequencies-mhz", "306,714,930.75", "--iterations", "2", "--idle-s", "0.5",
    ]) == 0
    assert "(emulated)" in capsys.readouterr().out
    measured = load_device_profile(str(out))
    assert measured.source == "emulated" and measured.name == "orin-agx-32gb-measured"
    assert measured.frequencies_hz == (306e6, 714e6, 930.75e6)
    assert len(measured.calibration) == 3 * (1 + 2 * 3)  # idle + (prefill + 2 decode) per batch
    published = PerformanceModel(load_device_profile("orin-agx-32gb"), load_model_profile("llama-3.2-1b"))
    calibrated = PerformanceModel(measured, load_model_profile("llama-3.2-1b"))
    assert calibrated.calibrated and not published.calibrated
    for row in measured.calibration:
        if row.phase == "idle":
            assert calibrated.idle_power_w(row.freq_hz) == pytest.approx(published.idle_power_w(row.freq_hz), rel=1e-6)
            continue
        work = (IterationWork({f"r{i}": row.tokens // row.batch for i in range(row.batch)}, row.tokens, 0)
                if row.phase == "prefill" else
                IterationWork({f"r{i}": 1 for i in range(row.batch)}, 0, row.batch, row.context_tokens))
        assert row.iteration_time_s == pytest.approx(published.iteration_time_s(work, row.freq_hz), rel=1e-6)
        assert calibrated.iteration_time_s(work, row.freq_hz) == pytest.approx(row.iteration_time_s, rel=1e-6)
        assert calibrated.iteration_power_w(work, row.freq_hz) == pytest.approx(
            published.iteration_power_w(work, row.freq_hz), rel=0.15)
    device = make_device(CamelConfig(device="emulated", device_profile=str(out)))
    assert device.info().energy_method == "calibration-table"
    assert device.info().extra["profile_source"] == "emulated"
    device.close()


def test_measured_table_changes_the_emulator(tmp_path: Path) -> None:
    data = json.loads(json.dumps(__import__("yaml").safe_load(
        (REPO / "camel_vllm/data/profiles/orin-agx-32gb.yaml").read_text())))
    data["name"] = "slow-board"
    data["calibration"] = [
        {"model": "llama-3.2-1b", "phase": "decode", "freq_hz": f, "batch": 1, "tokens": 1,
         "context_tokens": 512, "iteration_time_s": t, "power_w": p}
        for f, t, p in ((306e6, 0.2, 9.0), (930.75e6, 0.1, 20.0))
    ]
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(data))
    pm = PerformanceModel(load_device_profile(str(path)), load_model_profile("llama-3.2-1b"))
    work = IterationWork({"a": 1}, 0, 1, 512)
    assert pm.iteration_time_s(work, 306e6) == pytest.approx(0.2)
    assert pm.iteration_time_s(work, 930.75e6) == pytest.approx(0.1)
    assert pm.iteration_power_w(work, 618.375e6) == pytest.approx(14.5)  # interpolated


def test_sample_period_rule() -> None:
    assert sample_period_s(None, None) == pytest.approx(0.02)
    assert sample_period_s(None, 0.013) == pytest.approx(0.02)  # 50 Hz is slower than 77 Hz
    assert sample_period_s(None, 0.1) == pytest.approx(0.1)  # the sensor is slower
    assert sample_period_s(10.0, 0.1) == pytest.approx(0.1)
