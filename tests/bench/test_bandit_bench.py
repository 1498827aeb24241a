"""The bandit benchmark: environments, one small run, the CLI's JSON."""

from __future__ import annotations

import json

import numpy as np

from camel_vllm.bench.bandit import make_environment, orin_arms, run_benchmark, run_policy
from camel_vllm.cli import main


def test_environments_are_built_from_the_orin_model() -> None:
    arms = orin_arms(49)
    assert len(arms) == 49
    stationary, _ = make_environment("stationary", arms, 100)
    shift, _ = make_environment("shift", arms, 100)
    assert stationary.mean_costs.shape == (1, 49)
    assert shift.mean_costs.shape == (2, 49)
    assert list(shift.phase_of_step[:50]) == [0] * 50 and list(shift.phase_of_step[50:]) == [1] * 50
    low_best, high_best = shift.mean_costs.argmin(axis=1)
    assert low_best != high_best  # the load shift changes the best arm
    assert arms[int(high_best)].freq_hz > arms[int(low_best)].freq_hz
    default = arms.default_index()
    assert shift.mean_costs[0, default] > shift.mean_costs[0, low_best] + 0.05  # default wastes EDP at low load


def test_oracle_has_zero_regret_and_runs_are_seeded() -> None:
    arms = orin_arms(49)
    env, _ = make_environment("shift", arms, 200)
    total, share, near, curve = run_policy("oracle", env, arms, seed=0, noise_std=0.25)
    assert total == 0.0 and share == 1.0 and curve[-1] == 0.0
    a = run_policy("camel-ts", env, arms, seed=3, noise_std=0.25)
    b = run_policy("camel-ts", env, arms, seed=3, noise_std=0.25)
    assert a[0] == b[0] and np.array_equal(a[3], b[3])


def test_small_benchmark_result_shape() -> None:
    result = run_benchmark(num_arms=49, horizon=300, seeds=2, envs=("shift",), policies=("camel-ts", "grid"),
                           ablations=False)
    assert result["emulated"] is True
    policies = result["envs"]["shift"]["policies"]
    assert set(policies) == {"camel-ts", "grid"}
    for summary in policies.values():
        assert set(summary) >= {"regret_mean", "regret_p90", "best_arm_share_last_quarter"}
        assert np.isfinite(summary["regret_mean"]) and summary["regret_p90"] >= 0.0
    assert result["policies"] == policies  # single environment: also at the top level
    assert policies["camel-ts"]["regret_mean"] < policies["grid"]["regret_mean"]


def test_cli_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bandit.json"
    rc = main(["bench", "bandit", "--arms", "49", "--horizon", "200", "--seeds", "1", "--env", "stationary",
               "--policies", "camel-ts,ucb", "--no-ablation", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["envs"]["stationary"]["policies"]) == {"camel-ts", "ucb"}
    assert "emulated" in capsys.readouterr().out


def test_cost_fit_study_prefers_log_edp(tmp_path) -> None:
    from camel_vllm.bench.bandit import cost_scale_study

    rng = np.random.default_rng(0)
    trace = tmp_path / "trace.csv"
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for i in range(300):
        lines.append(f"2023-11-16 18:15:46.{i:07d},{int(rng.lognormal(6.5, 0.8))},{int(rng.lognormal(4.8, 0.9)) + 1}")
    trace.write_text("\n".join(lines) + "\n")
    study = cost_scale_study(str(trace), requests=300)
    for by_cost in study.values():
        assert abs(by_cost["log_edp"]["skew"]) < abs(by_cost["edp_js"]["skew"])
        assert by_cost["log_edp"]["excess_kurtosis"] < by_cost["edp_js"]["excess_kurtosis"]


def test_zeus_rows_are_zeus_default_and_the_window_10_variant() -> None:
    from camel_vllm.bench.bandit import BENCH_POLICIES, resolve_policy

    assert {"zeus-ts", "zeus-ts-w10"} <= set(BENCH_POLICIES)
    assert resolve_policy("zeus-ts") == ("zeus-ts", "zeus-ts", None)  # Zeus's defaults: window 0
    assert resolve_policy("zeus-ts-w10") == ("zeus-ts-w10", "zeus-ts", {"policy_params": {"window": 10}})
    result = run_benchmark(num_arms=49, horizon=400, seeds=2, envs=("stationary",),
                           policies=("zeus-ts", "zeus-ts-w10"), ablations=False)
    rows = result["policies"]
    assert set(rows) == {"zeus-ts", "zeus-ts-w10"}
    assert rows["zeus-ts"]["regret_mean"] != rows["zeus-ts-w10"]["regret_mean"]


def test_cli_refuses_an_unknown_policy_in_one_line(capsys) -> None:
    rc = main(["bench", "bandit", "--policies", "camel-ts,zeus", "--seeds", "1", "--horizon", "10"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "--policies" in err and "unknown zeus" in err and "bench sim" not in err
    assert "zeus-ts-w10" in err
    # camel itself learns the board per iteration, which these environments do not model
    rc = main(["bench", "bandit", "--policies", "camel", "--seeds", "1", "--horizon", "10"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unknown camel" in err and "bench sim, or camel-ts here" in err
