"""Offline assignment: the MILP is optimal (brute force), respects shares, beats baselines; CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from camel_vllm.cli import main as cli_main
from camel_vllm.offline.energy_model import EnergyModel, WorkloadFit
from camel_vllm.offline.planning import DeviceModel, _weights, cost_matrices, min_count, plan, solve_milp

# device A: cheap per output token, slow on long prompts; device B: the opposite
FIT_A = WorkloadFit(energy_coef=(0.010, 0.10, 1e-5), runtime_coef=(2e-3, 0.05, 1e-6), train_weight=100)
FIT_B = WorkloadFit(energy_coef=(0.002, 0.25, 2e-5), runtime_coef=(5e-4, 0.03, 2e-6), train_weight=100)
MODELS = [DeviceModel("orin-agx-32gb", FIT_A, "612/16"), DeviceModel("orin-agx-64gb", FIT_B, "816/24")]


def tokens(n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(10, 3000)), int(rng.integers(5, 600))) for _ in range(n)]


@pytest.mark.parametrize("zeta", [0.0, 0.3, 1.0])
def test_milp_matches_brute_force(zeta):
    toks = tokens(10, seed=4)
    energy, runtime = cost_matrices(MODELS, toks)
    w = _weights(energy, runtime, zeta)
    need = min_count(10, 0.3)
    best = min(
        (sum(w[i, a] for i, a in enumerate(assign)), assign)
        for assign in itertools.product(range(2), repeat=10)
        if min(np.bincount(assign, minlength=2)) >= need
    )
    got = solve_milp(energy, runtime, zeta, 0.3)
    assert sum(w[i, a] for i, a in enumerate(got)) == pytest.approx(best[0], abs=1e-9)


def test_plan_beats_baselines_and_respects_min_share():
    result = plan(MODELS, tokens(400), zeta=1.0, min_share=0.2, seed=1)
    milp = result.assignments["milp"]
    assert min(milp.requests_per_device.values()) >= 80
    assert milp.energy_j < result.assignments["round-robin"].energy_j
    assert milp.energy_j < result.assignments["random"].energy_j
    assert result.saving_vs("round-robin") > 0.05
    fast = plan(MODELS, tokens(400), zeta=0.0, min_share=0.2)
    assert fast.assignments["milp"].runtime_s <= fast.assignments["round-robin"].runtime_s
    assert fast.assignments["milp"].runtime_s < result.assignments["milp"].runtime_s
    # a share of 1/D forces an even split
    even = plan(MODELS, tokens(400), zeta=1.0, min_share=0.5)
    assert even.assignments["milp"].requests_per_device == {"orin-agx-32gb": 200, "orin-agx-64gb": 200}


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="infeasible"):
        plan(MODELS, tokens(10), zeta=0.5, min_share=0.6)
    with pytest.raises(ValueError, match="zeta"):
        plan(MODELS, tokens(10), zeta=1.5)
    with pytest.raises(ValueError, match="two device"):
        plan(MODELS[:1], tokens(10), zeta=0.5)


def _model_file(path, fit: WorkloadFit, profile: str) -> str:
    model = EnergyModel(device="emulated", device_profile=profile, model_profile="llama-3.2-1b", emulated=True,
                        arms={"612/16": fit}, pooled=fit, r2_energy=0.99, r2_runtime=0.98, train_requests=100,
                        test_requests=25, test_fraction=0.2, seed=0)
    model.save(str(path))
    return str(path)


def test_cli_plans_an_azure_trace(tmp_path, capsys):
    csv = tmp_path / "azure.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for i, (tin, tout) in enumerate(tokens(60)):
        rows.append(f"2023-11-16 18:15:{i // 10:02d}.{i % 10}000000,{tin},{tout}")
    csv.write_text("\n".join(rows) + "\n")
    a = _model_file(tmp_path / "a.json", FIT_A, "orin-agx-32gb")
    b = _model_file(tmp_path / "b.json", FIT_B, "orin-agx-64gb")
    out = tmp_path / "plan.json"
    rc = cli_main(["plan", "--models", a, b, "--trace", str(csv), "--zeta", "0.75",
                   "--requests", "50", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "EMULATED" in text and "round-robin" in text and "milp" in text
    data = json.loads(out.read_text())
    assert data["requests"] == 50 and data["emulated"] is True
    assert data["assignments"]["milp"]["objective"] <= data["assignments"]["round-robin"]["objective"]
    assert cli_main(["plan", "--models", a, "--trace", str(csv), "--zeta", "0.5"]) == 2
