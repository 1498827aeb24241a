"""benchmarks/contextual_headroom.py: the demand rule and its harness (emulated device, simulator)."""

from __future__ import annotations

import json

from camel_vllm.bench.sim import PolicySpec, SimSetup, arm_set, mean_edp_js, run_one
from camel_vllm.core.events import Context, EngineSnapshot
from camel_vllm.policies.decision import DecisionInput
from camel_vllm.traces import Trace, TraceRequest
from tests.bench_scripts import load_benchmark

def _headroom():
    return load_benchmark("contextual_headroom")


def _bursty_trace() -> Trace:
    """Quiet single requests, then a burst of long prompts: both branches of a rule fire."""
    times = [0.0, 5.0, 10.0] + [15.0 + 0.05 * i for i in range(12)] + [40.0, 45.0]
    requests = tuple(TraceRequest(request_id=f"r{i}", arrival_s=t, prompt_tokens=1500 if 15.0 <= t < 40.0 else 200,
                                  output_tokens=24) for i, t in enumerate(times))
    return Trace(name="bursty", requests=requests, source="test")


def test_demand_rule_switches_at_the_threshold():
    rule = _headroom().DemandRulePolicy(10, low=3, high=7, max_demand=2)
    choices = []
    for running, waiting in [(1, 0), (2, 0), (2, 1), (0, 5), (1, 1)]:
        snapshot = EngineSnapshot(now_s=0.0, num_running=running, num_waiting=waiting)
        choices.append(rule.select(DecisionInput(Context(), list(range(10)), None, snapshot)))
    assert choices == [3, 3, 7, 7, 3]


def test_rule_that_never_switches_reproduces_the_static_run():
    """With K above any demand the rule is the static low arm: same requests, same EDP."""
    module = _headroom()
    setup = SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b", seed=3)
    trace = _bursty_trace()
    arms = arm_set(setup)
    low = next(i for i, a in enumerate(arms.arms) if a.label == "612/8")
    high = next(i for i, a in enumerate(arms.arms) if a.label == "930.75/28")
    static = run_one(setup, PolicySpec("s", "static", {"arm": [612, 8]}), trace)
    always_low = module.run_rule(setup, trace, low, high, max_demand=10**6, epoch_iterations=64)
    assert always_low.low_share == 1.0
    assert always_low.mean_edp_js == mean_edp_js(static)
    never_low = module.run_rule(setup, trace, low, high, max_demand=-1, epoch_iterations=64)
    assert never_low.low_share == 0.0
    assert never_low.mean_edp_js != always_low.mean_edp_js
    # A real threshold: quiet decisions take the low arm, the burst's take the high one.
    mixed = module.run_rule(setup, trace, low, high, max_demand=1, epoch_iterations=4)
    assert 0.0 < mixed.low_share < 1.0
    assert mixed.mean_edp_js not in (always_low.mean_edp_js, never_low.mean_edp_js)


def test_script_reports_best_static_and_rules(tmp_path, capsys):
    trace_path = tmp_path / "t.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for r in _bursty_trace().requests:
        rows.append(f"2023-11-16 18:{int(r.arrival_s // 60):02d}:{r.arrival_s % 60:010.7f},"
                    f"{r.prompt_tokens},{r.output_tokens}")
    trace_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "h.json"
    rc = _headroom().main(["--trace", str(trace_path), "--epochs", "16", "--demand", "1", "--workers", "1",
                           "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["emulated"] is True
    statics = result["static_mean_edp_js"]
    assert len(statics) == 49
    assert result["best_static"]["mean_edp_js"] == min(statics.values())
    assert len(result["rules"]) == 48  # every other arm as the low arm
    assert all(r["high"] == result["best_static"]["arm"] for r in result["rules"])
    assert "EMULATED" in capsys.readouterr().out


def test_edp_spread_states_noise_and_concentration():
    spread = _headroom().EdpSpread.of([1.0] * 99 + [101.0])
    assert spread.requests == 100 and spread.mean_edp_js == 2.0
    assert spread.top_count == 1 and spread.top_share == 101.0 / 200.0
    sd = (99 * 1.0**2 + 99.0**2) ** 0.5 / 99**0.5  # sample sd around the mean 2
    assert abs(spread.cv - sd / 2.0) < 1e-12 and abs(spread.stderr_js - sd / 10.0) < 1e-12
