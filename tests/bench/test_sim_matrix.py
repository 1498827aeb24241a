"""``camel-vllm bench matrix``: loads relative to the default arm's capacity, paired changes, verdicts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from camel_vllm.bench.matrix import MatrixPlan, capacity_rps, cell_trace, run_matrix, saturated
from camel_vllm.bench.sim import PolicySpec, SimSetup, run_one
from camel_vllm.cli import main as cli_main
from camel_vllm.traces import transforms


def test_windows_of_a_short_file_are_spread_evenly_and_seeded_synthetics_differ() -> None:
    trace = "camel_vllm/data/traces/azure_conv_first2000.csv"
    notes = [cell_trace(trace, s, 1000, seeds=3).notes[-1] for s in range(3)]
    assert notes == ["seed 0: rows 0..999 of 2000", "seed 1: rows 666..1665 of 2000",
                     "seed 2: rows 1332..331 of 2000 (wrapped round)"]
    wrapped = cell_trace(trace, 2, 1000, seeds=3)
    arrivals = [r.arrival_s for r in wrapped.requests]
    assert arrivals == sorted(arrivals) and len({r.request_id for r in wrapped.requests}) == 1000
    a, b = cell_trace("synthetic:on-off", 0, 50), cell_trace("synthetic:on-off", 1, 50)
    assert [r.prompt_tokens for r in a.requests] != [r.prompt_tokens for r in b.requests]
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        cell_trace("synthetic:nope", 0, 10)


def test_load_one_is_the_default_arms_saturated_throughput() -> None:
    setup = SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b")
    trace = cell_trace("synthetic:short-prompt-long-output", 0, 150)
    cap = capacity_rps(run_one(setup, PolicySpec("default", "default"), saturated(trace)))
    light = run_one(setup, PolicySpec("default", "default"), transforms.target_rps(trace, 0.3 * cap))
    heavy = run_one(setup, PolicySpec("default", "default"), transforms.target_rps(trace, 2.0 * cap))
    # under a third of capacity the batch is never full; at twice it, it is and requests queue
    assert light.max_running < 28 == heavy.max_running

    def mean_latency(run) -> float:
        return sum(r.latency_s for r in run.records) / len(run.records)

    assert mean_latency(heavy) > 1.5 * mean_latency(light)


def test_matrix_pairs_every_policy_with_default_and_the_best_static_arm() -> None:
    from camel_vllm.bench.sim import parse_policies

    setup = SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b")
    plan = MatrixPlan(traces=("synthetic:short-prompt-long-output",), loads=(0.3,), seeds=2, requests=60,
                      policies=tuple(parse_policies("default,camel-ts,oracle")), setup=setup)
    (cell,) = run_matrix(plan, workers=1)
    assert cell.load == 0.3 and len(cell.capacity_rps) == 2
    assert cell.target_rps == pytest.approx([0.3 * c for c in cell.capacity_rps])
    assert set(cell.vs_default) == {"camel-ts", "oracle"} and set(cell.vs_oracle) == {"default", "camel-ts"}
    assert cell.vs_default["oracle"]["requests"] == 120 and cell.vs_default["oracle"]["batches"] == 40
    assert cell.vs_default["oracle"]["diff_pct"] < 0  # the best static arm beats default at 30 % load
    assert cell.vs_oracle["default"]["diff_pct"] > 0
    verdict = cell.verdicts["camel-ts"]
    expected_harm = cell.vs_default["camel-ts"]["diff_pct"] <= max(2.0, 2 * cell.vs_default["camel-ts"]["stderr_pct"])
    assert verdict["no_harm"] is expected_harm
    assert len(cell.oracle_arms) == 2


def test_cli_writes_table_json_and_heatmap(tmp_path, capsys) -> None:
    out, png = tmp_path / "m.json", tmp_path / "m.png"
    rc = cli_main(["bench", "matrix", "--trace", "synthetic:long-prompt", "--loads", "0.5", "--seeds", "1",
                   "--requests", "40", "--policies", "default,camel", "--workers", "1", "--json", str(out),
                   "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "EMULATED" in text and "synthetic:long-prompt" in text
    data = json.loads(out.read_text())
    assert data["emulated"] is True and data["mode"] == "matrix" and len(data["boards"]) == 1
    (board,) = data["boards"]
    assert board["device"] == "orin-agx-32gb" and len(board["cells"]) == 1 and board["arms"] == 49
    latency = board["cells"][0]["latency"]["camel"]
    assert 0 < latency["ttft_p50_s"] <= latency["ttft_p99_s"] and latency["slo_met"] is None
    assert "saturated throughput" in data["load_definition"]
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["--loads", "0.5,nan"], "camel config: loads=\"0.5,nan\": every load must be a number > 0"),
    (["--loads", "x"], "camel config: loads=\"x\": must be a comma list of numbers"),
    (["--seeds", "0"], "camel config: seeds=0: must be a positive integer"),
    (["--trace", "synthetic:nope"], "trace synthetic:nope: unknown synthetic kind"),
    (["--policies", "camel,bogus"], "policies=\"bogus\""),
])
def test_bad_input_is_one_line_and_exit_2_within_seconds(tmp_path, args, message) -> None:
    cmd = [sys.executable, "-m", "camel_vllm", "bench", "matrix", "--requests", "20", "--json",
           str(tmp_path / "o.json"), *args]
    if "--trace" not in args:
        cmd += ["--trace", "synthetic:on-off"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    err = done.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("camel-vllm bench matrix: ") and message in err, err
    assert not (tmp_path / "o.json").exists()


def test_table_names_the_most_frequent_best_arm_and_a_tie_goes_to_the_earliest_seed() -> None:
    from camel_vllm.bench.matrix import ORACLE, CellResult
    from camel_vllm.bench.matrix_report import format_matrix

    def row(arms):
        cell = CellResult(trace="t.csv", load=0.2, capacity_rps=[1.0] * 3, target_rps=[0.2] * 3,
                          mean_edp_js={"default": 1.0}, oracle_arms=arms,
                          vs_default={ORACLE: {"diff_pct": -6.0, "stderr_pct": 1.0}})
        return format_matrix([cell]).splitlines()[1]

    assert "612/8" in row(["714/20", "612/8", "612/8"])
    for arms in (["714/24", "816/28", "714/20"], ["714/20", "816/28", "714/24"]):
        assert arms[0] in row(arms) and all(a not in row(arms) for a in arms[1:])
