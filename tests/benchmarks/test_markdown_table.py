"""benchmarks/markdown_table.py: the README's tables from a result JSON."""

from __future__ import annotations

from tests.bench_scripts import load_benchmark

def _table_module():
    return load_benchmark("markdown_table")


def _policy(edp_js: float) -> dict:
    return {"requests_total": 10, "requests_completed": 10, "energy_j": 1000.0, "mean_latency_s": 1.0,
            "p50_latency_s": 1.0, "p99_latency_s": 2.0, "mean_ttft_s": 0.1, "mean_edp_js": edp_js,
            "arm_switches": 3, "arms": {}}


def test_change_against_default_carries_the_paired_error_where_recorded():
    result = {
        "trace": "t", "requests": 10, "device": "d", "model": "m", "emulated": True,
        "policies": {"default": _policy(100.0), "camel": _policy(80.0), "grid": _policy(90.0)},
        "details": {"camel": {"edp_vs_default": {"diff_pct": -19.5, "stderr_pct": 1.25}, "total_edp_js": 800.0}},
    }
    lines = _table_module().table(result).splitlines()
    assert lines[0] == "t, 10 requests, d / m (energy emulated)"
    camel = next(line for line in lines if line.startswith("| camel |"))
    grid = next(line for line in lines if line.startswith("| grid |"))
    assert "| 80.0 | -19.5 ± 1.2% | 800 |" in camel  # the paired change, not the ratio of the means
    assert "| 90.0 | -10.0% |  |" in grid  # no pairing recorded: the change of the means
