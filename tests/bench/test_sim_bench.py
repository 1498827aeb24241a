"""``bench sim`` end to end: real controller, policies and emulated device on a small trace."""

from __future__ import annotations

import json

import pytest

from camel_vllm.bench.results import format_table
from camel_vllm.bench.sim import SimSetup, bench, mean_edp_js, parse_policies
from camel_vllm.cli import main as cli_main
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.traces import alpaca_like

SMALL = {"frequencies_mhz": [306, 612, 930.75], "batch_sizes": [4, 16], "epoch_iterations": 8}


def _setup(seed: int = 0) -> SimSetup:
    return SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b", seed=seed,
                         base=CamelConfig.from_mapping(SMALL))


def _timed_trace(path, n: int) -> str:
    """A vLLM timed_trace JSONL file of ``n`` short requests, two a second; returns its path."""
    path.write_text("".join(json.dumps({"timestamp": i * 0.5, "input_length": 40 + i, "output_length": 10,
                                        "hash_ids": []}) + "\n" for i in range(n)))
    return str(path)


def test_policies_run_on_the_same_requests_and_oracle_is_best_static():
    trace = alpaca_like(80, rate_per_s=2.0, seed=1)
    out = bench(_setup(), parse_policies("default,camel,grid,static:612:4,oracle"), trace, workers=1)
    ids = {r.request_id for r in trace.requests}
    for name, run in out.runs.items():
        assert {r.request_id for r in run.records} == ids, name
        assert out.result.policies[name].requests_completed == 80
    assert len(out.static_runs) == 6
    best = min(mean_edp_js(r) for r in out.static_runs.values())
    assert out.result.policies["oracle"].mean_edp_js == pytest.approx(best)
    assert out.result.policies["default"].arms == {"930.75/16": out.result.policies["default"].arms["930.75/16"]}
    assert out.result.policies["static:612:4"].arms.keys() == {"612/4"}
    assert out.result.emulated is True
    # Each policy against default, request by request: the paired change is the change of the means.
    assert "edp_vs_default" not in out.result.details["default"]
    for name in ("camel", "grid", "static:612:4", "oracle"):
        paired = out.result.details[name]["edp_vs_default"]
        change = 100 * (out.result.policies[name].mean_edp_js / out.result.policies["default"].mean_edp_js - 1)
        assert paired["requests"] == 80 and paired["batches"] == 20
        assert paired["diff_pct"] == pytest.approx(change) and paired["stderr_pct"] > 0
    assert f"{change:+.1f}±{paired['stderr_pct']:.1f}%" in format_table(out.result)


def test_seeded_runs_repeat_and_seeds_differ():
    trace = alpaca_like(60, rate_per_s=3.0, seed=2)
    spec = parse_policies("camel")
    a = bench(_setup(0), spec, trace, workers=1).result.policies["camel"]
    b = bench(_setup(0), spec, trace, workers=1).result.policies["camel"]
    c = bench(_setup(5), spec, trace, workers=1).result.policies["camel"]
    assert a == b
    assert a.arms != c.arms or a.energy_j != c.energy_j


def test_parse_policies_rejects_bad_names():
    with pytest.raises(ConfigError, match="policies"):
        parse_policies("default,nope")
    with pytest.raises(ConfigError, match="static:MHZ:BATCH"):
        parse_policies("static:612")


def test_cli_writes_schema_and_plots(tmp_path):
    trace = _timed_trace(tmp_path / "t.jsonl", 30)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("frequencies_mhz: [306, 930.75]\nbatch_sizes: [4, 8]\n")
    out = tmp_path / "r.json"
    rc = cli_main(["bench", "sim", "--trace", trace, "--policies", "default,ts,oracle", "--config", str(cfg),
                   "--workers", "1", "--json", str(out), "--plot-dir", str(tmp_path / "plots")])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["emulated"] is True and data["requests"] == 30 and data["device"] == "orin-agx-32gb"
    for p in data["policies"].values():
        assert p["requests_completed"] == 30 and p["energy_j"] > 0 and p["mean_edp_js"] > 0
        assert p["p50_latency_s"] <= p["p99_latency_s"]
    for name in ("edp_over_time", "arm_choices", "regret", "energy_latency"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 1000


def test_without_the_oracle_no_regret_plot_is_written_and_the_command_says_so(tmp_path, capsys):
    trace = _timed_trace(tmp_path / "t.jsonl", 30)
    plots = tmp_path / "plots"
    rc = cli_main(["bench", "sim", "--trace", trace, "--policies", "default,ts", "--workers", "1",
                   "--json", str(tmp_path / "r.json"), "--plot-dir", str(plots)])
    assert rc == 0
    assert sorted(p.name for p in plots.iterdir()) == ["arm_choices.png", "edp_over_time.png", "energy_latency.png"]
    out = capsys.readouterr().out
    for name in ("edp_over_time", "arm_choices", "energy_latency"):
        assert f"wrote {plots / name}.png" in out
    assert ("did not write regret.png: no oracle run to measure regret against (add oracle to --policies)"
            in out.splitlines())


def test_cli_bad_trace_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,x,3\n")
    assert cli_main(["bench", "sim", "--trace", str(bad), "--json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("bad.csv:2: ContextTokens='x' is not an integer") and "\n" not in err


def test_static_sweep_reuse_is_exact():
    from camel_vllm.bench.sim import arm_set, run_one, run_static_sweep, static_specs

    trace = alpaca_like(60, rate_per_s=4.0, seed=3)
    setup = SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b",
                          base=CamelConfig.from_mapping({"frequencies_mhz": [306], "batch_sizes": [2, 4, 8, 28]}))
    specs = static_specs(arm_set(setup))
    sweep = run_static_sweep(setup, specs, trace, workers=1)
    for spec in specs:
        direct = run_one(setup, spec, trace)
        got = sweep[spec.label]
        assert (got.records, got.energy_j, got.pulls, got.decisions) == \
               (direct.records, direct.energy_j, direct.pulls, direct.decisions), spec.label


def test_request_log_gets_one_file_per_policy(tmp_path):
    trace = alpaca_like(30, rate_per_s=2.0, seed=3)
    base = CamelConfig.from_mapping({**SMALL, "request_log": str(tmp_path / "requests.jsonl")})
    setup = SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b", base=base)
    bench(setup, parse_policies("default,static:612:4"), trace, workers=1)
    for label in ("default", "static_612_4"):
        lines = [json.loads(x) for x in (tmp_path / f"requests.{label}.jsonl").read_text().splitlines()]
        finished = [x for x in lines if "request_id" in x]
        assert {x["request_id"] for x in finished} == {r.request_id for r in trace.requests}


def test_state_dir_carries_learning_from_one_run_to_the_next(tmp_path):
    trace = _timed_trace(tmp_path / "t.jsonl", 30)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("frequencies_mhz: [306, 930.75]\nbatch_sizes: [4, 8]\nepoch_iterations: 8\n")
    state_dir = tmp_path / "state"  # made by the first run
    learned = []
    for run in range(2):
        out = tmp_path / f"r{run}.json"
        rc = cli_main(["bench", "sim", "--trace", trace, "--policies", "default,camel,epsilon", "--config", str(cfg),
                       "--workers", "1", "--json", str(out), "--state-dir", str(state_dir)])
        assert rc == 0
        notes = json.loads(out.read_text())["notes"]
        for name in ("camel", "epsilon"):
            path = state_dir / f"{name}.json"
            assert (f"{name}: started cold (no learned state at {path} yet)" if run == 0
                    else f"{name}: started from the learned state in {path}") in notes
        assert sorted(p.name for p in state_dir.iterdir()) == ["camel.json", "epsilon.json"]  # default learns nothing
        saved = json.loads((state_dir / "camel.json").read_text())["policy_state"]
        learned.append((saved["workload"]["finished"], saved["board"]["iterations"]))
    # every finished request and iteration is learned from once: the second run adds to the first
    assert learned[0][0] == 30 and learned[1][0] == 60
    assert 0 < learned[0][1] < learned[1][1]


def test_state_dir_that_cannot_be_a_folder_is_one_line(tmp_path, capsys):
    trace = _timed_trace(tmp_path / "t.jsonl", 5)
    taken = tmp_path / "a-file"
    taken.write_text("")
    assert cli_main(["bench", "sim", "--trace", trace, "--state-dir", str(taken),
                     "--json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f'camel-vllm bench sim: camel config: state-dir="{taken}": exists and is not a folder'


def test_state_dir_with_state_learned_on_other_arms_says_it_started_cold(tmp_path):
    trace = _timed_trace(tmp_path / "t.jsonl", 10)
    state_dir = tmp_path / "state"
    for run, freqs in enumerate(("[306, 930.75]", "[306, 612, 930.75]")):
        cfg = tmp_path / f"c{run}.yaml"
        cfg.write_text(f"frequencies_mhz: {freqs}\nbatch_sizes: [4, 8]\n")
        out = tmp_path / f"r{run}.json"
        assert cli_main(["bench", "sim", "--trace", trace, "--policies", "camel", "--config", str(cfg),
                         "--workers", "1", "--json", str(out), "--state-dir", str(state_dir)]) == 0
    [note] = [n for n in json.loads(out.read_text())["notes"] if n.startswith("camel: ")]
    # (10 arms: camel's prefill-at-top arms too)
    assert note.startswith(f"camel: started cold: the learned state in {state_dir / 'camel.json'} is foreign "
                           "(arms is '6 arms', this run has '10 arms (or different labels)'), moved to ")
    # the first run's state is kept aside, and this run's learning is saved in its place
    assert len(list(state_dir.glob("camel.json.foreign-*"))) == 1 and (state_dir / "camel.json").exists()


def test_with_only_the_oracle_the_per_policy_plots_are_left_out(tmp_path, capsys):
    """arm_choices.png used to fail on zero panels; regret has nothing to compare."""
    trace = _timed_trace(tmp_path / "t.jsonl", 20)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("frequencies_mhz: [306, 930.75]\nbatch_sizes: [4, 8]\n")
    plots = tmp_path / "plots"
    rc = cli_main(["bench", "sim", "--trace", trace, "--policies", "oracle", "--config", str(cfg), "--workers", "1",
                   "--json", str(tmp_path / "r.json"), "--plot-dir", str(plots)])
    assert rc == 0
    assert sorted(p.name for p in plots.iterdir()) == ["edp_over_time.png", "energy_latency.png"]
    out = capsys.readouterr().out.splitlines()
    assert "did not write arm_choices.png: no policy but oracle ran" in out
    assert "did not write regret.png: no policy but oracle ran" in out
