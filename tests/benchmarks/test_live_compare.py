"""The demo end to end: real vLLM (CPU, tiny model), default vs camel, every request completes.

Starts two servers back to back under the machine lock (/tmp/camel-vllm.lock, taken inside
live_compare), so it takes about a minute or two on the 2-core machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench_scripts import load_benchmark

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "models" / "tiny"


def _live_compare():
    return load_benchmark("live_compare")


def test_live_compare_completes_every_request(tmp_path, capsys):
    if not TINY.is_dir():
        pytest.fail(f"{TINY} missing: run `camel-vllm make-tiny-model {TINY}` (scripts/setup does)")
    out = tmp_path / "live.json"
    rc = _live_compare().main(["--requests", "5", "--target-rps", "4", "--max-output", "8", "--warm-start", "200",
                               "--json", str(out), "--log-dir", str(tmp_path / "logs")])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    data = json.loads(out.read_text())
    assert data["emulated"] is True and data["mode"] == "replay"
    for name in ("default", "camel"):
        p = data["policies"][name]
        assert p["requests_completed"] == p["requests_total"] == 5
        assert p["energy_j"] > 0 and p["mean_edp_js"] > 0 and p["mean_ttft_s"] > 0
        assert data["details"][name]["energy_source"] == "emulated"
    assert data["policies"]["default"]["arms"] and set(data["policies"]["default"]["arms"]) == {"930.75/28"}
    assert "camel vs default (EMULATED energy" in printed
    # Absolute emulated time (the demo's default): the same requests also went through the simulator.
    sim = data["details"]["simulator"]
    assert set(sim) == {"default", "camel", "host_time"}
    # The live engine's own time per step, measured on the default run, went into the simulator.
    assert sim["host_time"]["steps"] > 0 and sim["host_time"]["step_s"] + sim["host_time"]["decode_step_s"] > 0
    assert set(data["details"]["simulator_without_host_time"]) == {"default", "camel"}
    assert all(sim[k]["energy_j"] > 0 and sim[k]["mean_edp_js"] > 0 for k in ("default", "camel"))
    assert "simulator on the same requests (EMULATED)" in printed
    assert any("absolute time" in n for n in data["notes"])
    assert any("warm-started from 200 simulated requests" in n for n in data["notes"])
