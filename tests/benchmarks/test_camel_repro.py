"""benchmarks/camel_repro.py on a short trace: the summary agrees with the per-model results."""

from __future__ import annotations

import json

import pytest

from tests.bench_scripts import load_benchmark

def test_summary_rows_come_from_the_model_results(tmp_path, capsys):
    module = load_benchmark("camel_repro")
    assert module.main(["--requests", "60", "--models", "llama-3.2-1b", "--workers", "1", "--out", str(tmp_path)]) == 0
    assert "ALL FIGURES EMULATED" in capsys.readouterr().out
    result = json.loads((tmp_path / "llama-3.2-1b.json").read_text())
    assert result["emulated"] is True
    rows = {r["policy"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    assert set(rows) == {"default", "grid", "ts", "camel", "oracle"}
    default_edp = result["policies"]["default"]["mean_edp_js"]
    for name in ("grid", "ts", "camel", "oracle"):
        row, paired = rows[name], result["details"][name]["edp_vs_default"]
        assert row["mean_edp_js"] == result["policies"][name]["mean_edp_js"]
        assert row["reduction_vs_default_pct"] == pytest.approx(100 * (1 - row["mean_edp_js"] / default_edp))
        assert row["reduction_vs_default_pct"] == pytest.approx(-paired["diff_pct"])
        assert row["reduction_vs_default_stderr_pct"] == paired["stderr_pct"]
        # a policy that served some request differently has a spread; camel, still warming up
        # on the default arm over 60 requests, may serve every request exactly as default does
        assert (paired["stderr_pct"] > 0) == (paired["diff_pct"] != 0)
    assert rows["oracle"]["final_arm"] == result["details"]["oracle"]["arm"]


def test_seeds_average_the_bandits_over_seeds_with_the_first_seed_included(tmp_path, capsys):
    module = load_benchmark("camel_repro")
    args = ["--requests", "40", "--models", "llama-3.2-1b", "--workers", "1", "--seeds", "2", "--out", str(tmp_path)]
    assert module.main(args) == 0
    assert "Over seeds 0..1 (EMULATED)" in capsys.readouterr().out
    first = {r["policy"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    seeds = {r["policy"]: r for r in json.loads((tmp_path / "seeds.json").read_text())}
    assert set(seeds) == {"ts", "camel"}
    for name, row in seeds.items():
        assert row["seeds"] == [0, 1] and len(row["reduction_vs_default_pct"]) == 2
        assert row["reduction_vs_default_pct"][0] == pytest.approx(first[name]["reduction_vs_default_pct"])
        assert row["mean_pct"] == pytest.approx(sum(row["reduction_vs_default_pct"]) / 2)


def test_seeds_below_one_is_refused_in_one_line(tmp_path, capsys):
    module = load_benchmark("camel_repro")
    with pytest.raises(SystemExit) as exc:
        module.main(["--seeds", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
