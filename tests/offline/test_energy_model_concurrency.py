"""The energy model's concurrency term: the controller's iteration shares, the grouped fit, old logs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from camel_vllm.cli import main as cli_main
from camel_vllm.control.controller import Controller
from camel_vllm.core.arms import ArmSet
from camel_vllm.control.context import ContextModel
from camel_vllm.control.cost import LogEDPCost
from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork
from camel_vllm.devices.base import NullDevice
from camel_vllm.offline.energy_model import EnergyModel
from camel_vllm.offline.fitting import fit_energy_model
from camel_vllm.offline.warm_start import priors_from_energy_model
from camel_vllm.policies.baselines import StaticPolicy

# ----------------------------------------------------------------- controller


def _step(ctl: Controller, now_s: float, tokens: dict[str, int], prefill: int = 0) -> None:
    ctl.begin_iteration(EngineSnapshot(now_s=now_s, num_running=len(tokens), num_waiting=0))
    total = sum(tokens.values())
    ctl.end_iteration(now_s + 0.01, IterationWork(tokens_by_request=tokens, num_prefill_tokens=prefill,
                                                  num_decode_tokens=total - prefill))


def test_controller_records_iteration_shares_and_mean_batch():
    arms = ArmSet.product([None], (4, 8))
    ctl = Controller(arms=arms, policy=StaticPolicy(arms, 1, np.random.default_rng(0)), device=NullDevice(),
                     cost=LogEDPCost(), context_model=ContextModel(contextual=False, max_batch=8), batch_only=True)
    for rid in ("a", "b", "c"):
        ctl.request_arrived(rid, 0.0, 10)
    _step(ctl, 0.0, {"a": 6}, prefill=6)                 # a prefills alone: share 1
    _step(ctl, 0.1, {"a": 1, "b": 4}, prefill=4)         # b's prefill beside a's decode: a 1/5, b 4/5
    _step(ctl, 0.2, {"a": 1, "b": 1, "c": 2}, prefill=2)  # a 1/4, b 1/4, c 2/4
    _step(ctl, 0.3, {"a": 1, "b": 1, "c": 1})            # 1/3 each
    _step(ctl, 0.4, {"a": 1})                            # alone again
    out_a = ctl.request_finished(FinishedRequest("a", 0.0, 0.5, prompt_tokens=6, output_tokens=4))
    out_b = ctl.request_finished(FinishedRequest("b", 0.0, 0.5, prompt_tokens=4, output_tokens=2))
    assert out_a.iteration_shares == pytest.approx(1 + 1 / 5 + 1 / 4 + 1 / 3 + 1)
    assert out_b.iteration_shares == pytest.approx(4 / 5 + 1 / 4 + 1 / 3)
    assert out_a.mean_batch == pytest.approx(4 / (1 + 1 / 5 + 1 / 4 + 1 / 3 + 1))
    assert ctl.tracked_requests == 1  # c still running


# ----------------------------------------------------------------- fitting
#: label -> energy (a0, a1, a2, a3 J/iteration), runtime (b0, b1, b2, b3 s/iteration)
TRUE = {
    "510/8": ((0.004, 0.08, -1e-5, 0.40), (3e-4, 0.020, 5e-7, -0.006)),
    "930.75/28": ((0.008, 0.12, -2e-5, 0.60), (2e-4, 0.015, 4e-7, -0.004)),
}


def synth(n: int, *, seed: int = 0, noise: float = 0.01) -> list[dict]:
    """Requests whose energy pays a3 per whole iteration, at a mean batch of 1-8 drawn per request."""
    rng = np.random.default_rng(seed)
    labels = list(TRUE)
    out = []
    for i in range(n):
        tin, tout = int(rng.integers(20, 2000)), int(rng.integers(5, 400))
        batch = float(rng.uniform(1.0, 8.0))
        shares = 1.0 + (tout - 1) / batch
        label = labels[i % 2]
        a, b = (np.array(c) for c in TRUE[label])
        x = np.array([tin, tout, tin * tout, shares], dtype=float)
        out.append({"type": "request", "request_id": f"r{i}", "prompt_tokens": tin, "output_tokens": tout,
                    "energy_j": float(x @ a) * (1 + noise * rng.standard_normal()),
                    "latency_s": float(x @ b) * (1 + noise * rng.standard_normal()),
                    "iteration_shares": shares, "mean_batch": tout / shares,
                    "arms": {label: 1.0}, "emulated": True, "device": "emulated",
                    "device_profile": "orin-agx-32gb", "model_profile": "llama-3.2-1b"})
    return out


def test_grouped_fit_recovers_known_coefficients_and_scores_bands():
    model = fit_energy_model(synth(1200), seed=1)
    assert model.concurrency and not model.notes
    for label, (a, b) in TRUE.items():
        fit = model.fit_for(label)
        assert fit.energy_iteration_j == pytest.approx(a[3], rel=0.05)
        assert fit.runtime_iteration_s == pytest.approx(b[3], rel=0.1)
        # with the logged shares the model reproduces the generating one
        req = (800, 120, 1 + 119 / 3.0)
        assert fit.energy_j(*req) == pytest.approx(float(np.array([800, 120, 800 * 120, req[2]]) @ a), rel=0.02)
        assert fit.r2_energy > 0.99 and fit.r2_runtime > 0.99
        # tokens alone cannot see the drawn concurrency: visibly worse
        assert fit.r2_energy_tokens_only < fit.r2_energy - 0.05
        assert 2.0 < fit.typical_batch < 6.0
    bands = {(b["arm"], b["band"]): b for b in model.bands}
    assert {band for _, band in bands} == {"1-2", "2-4", "4-8"}
    assert all(b["r2_energy"] > 0.98 for b in bands.values() if b["r2_energy"] is not None)
    assert sum(b["test_requests"] for b in model.bands) == model.test_requests


def test_folded_coefficients_equal_the_plain_wilkins_fit():
    """At the log's own concurrency, the folded model is the plain least-squares fit (FWL)."""
    recs = synth(600, seed=3)
    with_term = fit_energy_model(recs, seed=2)
    plain = fit_energy_model(recs, seed=2, concurrency=False)
    assert not plain.concurrency and plain.fit_for("510/8").energy_iteration_j is None
    for label in TRUE:
        np.testing.assert_allclose(with_term.fit_for(label).energy_coef, plain.fit_for(label).energy_coef, rtol=1e-6)
        assert with_term.fit_for(label).r2_energy_tokens_only == pytest.approx(plain.fit_for(label).r2_energy)


def test_old_log_without_the_field_falls_back_to_wilkins_per_arm(tmp_path, capsys):
    recs = synth(300, seed=4)
    for r in recs:
        del r["iteration_shares"], r["mean_batch"]
    model = fit_energy_model(recs)
    assert not model.concurrency and model.bands == []
    assert "300 of 300 records lack iteration_shares" in model.notes[0]
    assert model.fit_for("510/8").energy_iteration_j is None and model.fit_for("510/8").shares_coef is None
    log = tmp_path / "old.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "m.json"
    assert cli_main(["fit-energy-model", str(log), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "concurrency term: no" in text and "lack iteration_shares" in text and "930.75/28" in text
    loaded = EnergyModel.load(str(out))
    assert loaded.to_dict() == model.to_dict()
    # a log mixing old and new records is fitted the old way too, and says how many lack it
    mixed = synth(100, seed=5) + recs[:50]
    assert "50 of 150 records lack" in fit_energy_model(mixed).notes[0]


def test_cli_prints_bands_and_roundtrips_the_concurrency_model(tmp_path, capsys):
    log = tmp_path / "new.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in synth(400, seed=6)))
    out = tmp_path / "m.json"
    assert cli_main(["fit-energy-model", str(log), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "concurrency term: yes" in text and "mean_batch band" in text and "a3 J/it" in text
    loaded = EnergyModel.load(str(out))
    fit = loaded.fit_for("510/8")
    assert isinstance(fit.shares_coef, tuple) and fit.has_concurrency
    assert loaded.to_dict() == fit_energy_model(synth(400, seed=6)).to_dict()


def test_priors_use_the_logs_concurrency_or_a_given_mean_batch():
    model = fit_energy_model(synth(800, seed=7))
    arms = ArmSet.product([510e6, 930.75e6], [8, 28])
    typical = [(1000, 130), (500, 60)]
    at_log = priors_from_energy_model(model, arms, typical)
    busy = priors_from_energy_model(model, arms, typical, mean_batch=8.0)
    alone = priors_from_energy_model(model, arms, typical, mean_batch=1.0)
    idx = [a.label for a in arms.arms].index("930.75/28")
    # a request decoding alone pays whole iterations: more energy, higher log EDP
    assert alone[idx] > at_log[idx] > busy[idx]
    with pytest.raises(ValueError, match="mean_batch"):
        priors_from_energy_model(model, arms, typical, mean_batch=0.0)


def test_model_files_written_before_the_concurrency_fields_still_load():
    data = fit_energy_model(synth(200, seed=8), concurrency=False).to_dict()
    for key in ("concurrency", "bands"):
        del data[key]
    for fit in [data["pooled"], *data["arms"].values()]:
        for key in ("energy_iteration_j", "runtime_iteration_s", "shares_coef", "r2_energy_tokens_only",
                    "r2_runtime_tokens_only", "typical_batch"):
            del fit[key]
    model = EnergyModel.from_dict(data)
    assert not model.concurrency and model.fit_for("510/8").energy_j(100, 10) > 0
