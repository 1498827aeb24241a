"""Persistence of learned state: round trip, corrupt and foreign files, atomic writes."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from camel_vllm.control.state import SCHEMA_VERSION, PolicyStateStore
from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig
from camel_vllm.core.events import Context
from camel_vllm.devices.base import DeviceInfo
from camel_vllm.policies.registry import make_policy

ARMS = ArmSet.product([306e6, 612e6, 930.75e6], [4, 16, 28])
ORIN = DeviceInfo(kind="emulated", name="orin-a", energy_source="emulated", energy_method="roofline-model",
                  profile="orin-agx-32gb", can_set_frequency=True)


def _policy(name: str = "camel-ts", arms: ArmSet = ARMS, seed: int = 0):
    return make_policy(CamelConfig(policy=name, seed=seed), arms, num_contexts=6)


def _same_estimates(a, b) -> bool:
    ea, eb = a.estimates(), b.estimates()
    return len(ea) == len(eb) and all(
        (x.arm_index, x.context_id) == (y.arm_index, y.context_id)
        and [x.pulls, x.mean, x.std] == pytest.approx([y.pulls, y.mean, y.std], rel=1e-9, abs=1e-12)
        for x, y in zip(ea, eb)
    )


def _store(path, *, name: str = "camel-ts", arms: ArmSet = ARMS, device: DeviceInfo = ORIN, cost: str = "edp"):
    return PolicyStateStore(str(path), config=CamelConfig(policy=name, cost=cost), arms=arms, device_info=device)


def _trained(name: str = "camel-ts"):
    policy = _policy(name)
    rng = np.random.default_rng(0)
    for _ in range(60):
        ctx = Context(id=int(rng.integers(3)))
        arm = policy.select(ctx, list(range(len(ARMS))), None)
        policy.observe(arm, ctx, float(rng.normal(2.0, 0.3)), float(rng.uniform(0.2, 1.0)))
    return policy


@pytest.mark.parametrize("name", ["camel-ts", "ts", "zeus-ts", "ucb", "grid", "epsilon"])
def test_round_trip_restores_the_same_beliefs(tmp_path, name: str) -> None:
    trained = _trained(name)
    _store(tmp_path / "s.json", name=name).save(trained)
    fresh = _policy(name)
    assert _store(tmp_path / "s.json", name=name).load_into(fresh) is True
    assert _same_estimates(fresh, trained)
    assert json.dumps(fresh.state_dict(), sort_keys=True) == json.dumps(trained.state_dict(), sort_keys=True)


def test_file_is_versioned_with_metadata(tmp_path) -> None:
    _store(tmp_path / "s.json").save(_trained())
    payload = json.loads((tmp_path / "s.json").read_text())
    assert payload["schema"] == SCHEMA_VERSION
    meta = payload["meta"]
    assert meta["policy"] == "camel-ts" and meta["cost"] == "edp"
    assert meta["arms"] == [a.label for a in ARMS.arms]
    assert meta["device_kind"] == "emulated" and meta["device_profile"] == "orin-agx-32gb"


def test_missing_file_starts_fresh_without_warning(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        assert _store(tmp_path / "none.json").load_into(_policy()) is False
    assert not caplog.records


def test_truncated_file_is_moved_aside_and_learning_starts_fresh(tmp_path, caplog) -> None:
    path = tmp_path / "s.json"
    _store(path).save(_trained())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    fresh = _policy()
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        assert _store(path).load_into(fresh) is False
    assert not path.exists()
    moved = [p for p in os.listdir(tmp_path) if p.startswith("s.json.corrupt-")]
    assert len(moved) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert fresh.stats.n.sum() == 0  # nothing half-loaded


def test_tampered_state_fails_the_checksum(tmp_path) -> None:
    path = tmp_path / "s.json"
    _store(path).save(_trained())
    payload = json.loads(path.read_text())
    payload["policy_state"]["stats"]["xbar"][0][0] += 1.0
    path.write_text(json.dumps(payload))
    assert _store(path).load_into(_policy()) is False
    assert any(p.startswith("s.json.corrupt-") for p in os.listdir(tmp_path))


@pytest.mark.parametrize(
    "other",
    [
        {"arms": ArmSet.product([306e6, 612e6], [4, 16, 28])},
        {"name": "ts"},
        {"cost": "weighted"},
        {"device": DeviceInfo(kind="jetson", name="orin-a", energy_source="measured",
                              energy_method="ina3221-integrated", profile=None)},
    ],
)
def test_foreign_file_is_moved_aside(tmp_path, caplog, other) -> None:
    path = tmp_path / "s.json"
    _store(path).save(_trained())
    loader = _store(path, **other)
    policy = _policy(other.get("name", "camel-ts"), other.get("arms", ARMS))
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        assert loader.load_into(policy) is False
    assert any(p.startswith("s.json.foreign-") for p in os.listdir(tmp_path))
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1


def test_other_schema_is_foreign(tmp_path) -> None:
    path = tmp_path / "s.json"
    _store(path).save(_trained())
    payload = json.loads(path.read_text())
    payload["schema"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(payload))
    assert _store(path).load_into(_policy()) is False
    assert any(p.startswith("s.json.foreign-") for p in os.listdir(tmp_path))


def test_same_kind_other_board_warm_starts(tmp_path) -> None:
    path = tmp_path / "s.json"
    trained = _trained()
    _store(path).save(trained)
    other_board = DeviceInfo(kind="emulated", name="orin-b", energy_source="emulated",
                             energy_method="roofline-model", profile="orin-agx-32gb", can_set_frequency=True)
    fresh = _policy()
    assert _store(path, device=other_board).load_into(fresh) is True
    assert _same_estimates(fresh, trained)


def test_write_is_atomic(tmp_path, monkeypatch) -> None:
    path = tmp_path / "s.json"
    store = _store(path)
    first = _trained()
    store.save(first)
    old = path.read_bytes()
    seen: list[bytes] = []
    real_replace = os.replace

    def checking_replace(src, dst):
        # At the moment of the rename the target still holds the complete old file and the
        # temporary file (same folder) holds the complete new one.
        seen.append(open(dst, "rb").read())
        json.loads(open(src, "rb").read())
        assert os.path.dirname(os.path.abspath(src)) == os.path.dirname(os.path.abspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", checking_replace)
    second = _policy()
    second.observe(0, Context(), 1.0)
    store.save(second)
    assert seen == [old]

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        store.save(first)
    # The failed save left the last good file and no temporary file behind.
    assert json.loads(path.read_text())["policy_state"] == second.state_dict()
    assert sorted(os.listdir(tmp_path)) == ["s.json"]


def test_state_saved_contextual_loaded_without_contexts_is_foreign_not_corrupt(tmp_path, caplog) -> None:
    path = tmp_path / "s.json"
    _store(path).save(_trained())  # contextual camel-ts: 6 load contexts
    flat = make_policy(CamelConfig(policy="camel-ts", contextual=False), ARMS, num_contexts=6)
    loader = PolicyStateStore(str(path), config=CamelConfig(policy="camel-ts", contextual=False), arms=ARMS,
                              device_info=ORIN)
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        assert loader.load_into(flat) is False
    assert [p for p in os.listdir(tmp_path) if p.startswith("s.json.")][0].startswith("s.json.foreign-")
    assert loader.load_outcome.startswith(
        f"started cold: the learned state in {path} is foreign (learned over 6 load contexts, saved with "
        "contextual: true; this run has 1 (contextual: false)), moved to ")
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
