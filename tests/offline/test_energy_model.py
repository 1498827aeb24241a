"""Workload energy/runtime models: recovery of known coefficients, mixed arms, CLI, warm start."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from camel_vllm.cli import main as cli_main
from camel_vllm.core.arms import ArmSet
from camel_vllm.offline.energy_model import EnergyModel
from camel_vllm.offline.fitting import fit_energy_model
from camel_vllm.offline.warm_start import priors_from_energy_model

TRUE = {  # label -> (energy a0, a1, a2), (runtime b0, b1, b2)
    "306/4": ((0.002, 0.30, 1e-5), (1e-4, 0.060, 2e-6)),
    "930.75/28": ((0.004, 0.20, 2e-5), (5e-5, 0.025, 1e-6)),
}


def synth(n: int, *, seed: int = 0, noise: float = 0.02, mixed_every: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    labels = list(TRUE)
    out = []
    for i in range(n):
        tin = int(rng.integers(20, 2000))
        tout = int(rng.integers(5, 400))
        if mixed_every and i % mixed_every == 0:
            shares = {labels[0]: 0.3, labels[1]: 0.7}
        else:
            shares = {labels[i % 2]: 1.0}
        x = np.array([tin, tout, tin * tout], dtype=float)
        e = sum(s * x @ np.array(TRUE[k][0]) for k, s in shares.items())
        r = sum(s * x @ np.array(TRUE[k][1]) for k, s in shares.items())
        out.append({"type": "request", "request_id": f"r{i}", "prompt_tokens": tin, "output_tokens": tout,
                    "energy_j": e * (1 + noise * rng.standard_normal()),
                    "latency_s": r * (1 + noise * rng.standard_normal()),
                    "arms": shares, "emulated": True, "device": "emulated",
                    "device_profile": "orin-agx-32gb", "model_profile": "llama-3.2-1b"})
    return out


def test_recovers_coefficients_per_arm():
    model = fit_energy_model(synth(600), test_fraction=0.2, seed=1)
    for label, (a, b) in TRUE.items():
        fit = model.fit_for(label)
        np.testing.assert_allclose(fit.energy_coef, a, rtol=0.1, atol=2e-4)
        np.testing.assert_allclose(fit.runtime_coef, b, rtol=0.1, atol=2e-5)
        assert fit.r2_energy > 0.96 and fit.r2_runtime > 0.96
        assert fit.test_requests > 40
    assert model.r2_energy > 0.96 and model.train_requests == 480 and model.test_requests == 120
    assert model.emulated and model.device_profile == "orin-agx-32gb"


def test_mixed_arm_requests_are_credited_by_share():
    model = fit_energy_model(synth(800, mixed_every=3, seed=2), seed=3)
    assert model.mixed_requests > 200
    for label, (a, _) in TRUE.items():
        np.testing.assert_allclose(model.fit_for(label).energy_coef, a, rtol=0.1, atol=2e-4)
    # the pooled fit ignores arms and is visibly worse when arms differ
    assert model.pooled.r2_energy < model.r2_energy


def test_split_is_seeded_and_roundtrips(tmp_path):
    recs = synth(200)
    m1 = fit_energy_model(recs, seed=5)
    m2 = fit_energy_model(recs, seed=5)
    assert m1.to_dict() == m2.to_dict()
    path = tmp_path / "m.json"
    m1.save(str(path))
    loaded = EnergyModel.load(str(path))
    assert loaded.to_dict() == m1.to_dict()
    assert loaded.fit_for("306/4").energy_j(100, 10) == pytest.approx(m1.fit_for("306/4").energy_j(100, 10))
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a camel-vllm energy model"):
        EnergyModel.load(str(path))


def test_bad_record_is_named():
    recs = synth(10)
    del recs[4]["energy_j"]
    with pytest.raises(ValueError, match=r"record 5 \(request_id r4\).*energy_j"):
        fit_energy_model(recs)
    with pytest.raises(ValueError, match="at least 4"):
        fit_energy_model(synth(3))


def test_priors_order_arms_like_the_true_edp():
    model = fit_energy_model(synth(600))
    arms = ArmSet.product([306e6, 930.75e6], [4, 28])  # 306/28 and 930.75/4 have no fit
    typical = [(1000, 130), (500, 60)]
    priors = priors_from_energy_model(model, arms, typical)
    assert len(priors) == 4
    by_label = dict(zip([a.label for a in arms.arms], priors, strict=False))

    def true_log_edp(label):
        (a, b) = TRUE[label]
        vals = [math.log((np.array([i, o, i * o]) @ a) * (np.array([i, o, i * o]) @ b)) for i, o in typical]
        return sum(vals) / len(vals)

    for label in TRUE:
        assert by_label[label] == pytest.approx(true_log_edp(label), abs=0.1)
    assert by_label["930.75/28"] < by_label["306/4"]
    assert by_label["306/28"] == pytest.approx((by_label["306/4"] + by_label["930.75/28"]) / 2)


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    log = tmp_path / "req.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in synth(300)) + '{"type": "summary", "dropped": 0}\n')
    out = tmp_path / "model.json"
    assert cli_main(["fit-energy-model", str(log), "--json", str(out), "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert "EMULATED" in text and "930.75/28" in text and "held-out R^2" in text
    assert EnergyModel.load(str(out)).train_requests == 240
    assert cli_main(["fit-energy-model", str(tmp_path / "missing.jsonl")]) == 2


def test_shrinkage_keeps_a_rarely_seen_arm_near_the_pooled_fit():
    recs = synth(400, seed=7)
    rare = dict(recs[0], arms={"510/8": 1.0}, energy_j=recs[0]["energy_j"] * 5)  # one odd request
    plain = fit_energy_model(recs + [rare], test_fraction=0.0)
    shrunk = fit_energy_model(recs + [rare], test_fraction=0.0, shrinkage=20.0)
    x = (1000, 100)
    pooled = shrunk.pooled.energy_j(*x)
    assert abs(shrunk.fit_for("510/8").energy_j(*x) - pooled) < abs(plain.fit_for("510/8").energy_j(*x) - pooled)
    # well-observed arms barely move
    for label, (a, _) in TRUE.items():
        np.testing.assert_allclose(shrunk.fit_for(label).energy_coef, a, rtol=0.15, atol=3e-4)
