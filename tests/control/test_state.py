"""Persistence of learned state: round trip, corrupt and foreign files, atomic writes, and the
values a policy checks as it loads (a file whose checksum matches but whose numbers no run
could have learned is corrupt)."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from camel_vllm.control.state import SCHEMA_VERSION, PolicyStateStore, _checksum
from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig, SLOConfig
from camel_vllm.core.events import Context
from camel_vllm.devices.base import DeviceInfo
from camel_vllm.policies.registry import make_policy
from camel_vllm.policies.decision import DecisionInput

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
        for x, y in zip(ea, eb, strict=False)
    )


def _store(path, *, name: str = "camel-ts", arms: ArmSet = ARMS, device: DeviceInfo = ORIN, cost: str = "edp"):
    return PolicyStateStore(str(path), config=CamelConfig(policy=name, cost=cost), arms=arms, device_info=device)


def _trained(name: str = "camel-ts"):
    policy = _policy(name)
    rng = np.random.default_rng(0)
    for _ in range(60):
        ctx = Context(id=int(rng.integers(3)))
        arm = policy.select(DecisionInput(ctx, list(range(len(ARMS))), None))
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


# ------------------------------------------------ values checked at load (issue 23, item 1)
def _tampered(path, name: str, edit) -> None:
    """A state file of a fresh ``name`` policy whose policy_state ``edit`` changed, with a
    checksum that matches (a file only a value check can refuse)."""
    _store(path, name=name).save(_policy(name))
    payload = json.loads(path.read_text())
    edit(payload["policy_state"])
    payload["checksum"] = _checksum(payload["policy_state"])
    path.write_text(json.dumps(payload))


def _set(keys: str, value):
    """An edit that sets ``state[k1][k2]...`` (keys dotted; integers index lists)."""
    def edit(state):
        *parents, last = [int(k) if k.isdigit() else k for k in keys.split(".")]
        for key in parents:
            state = state[key]
        state[last] = value
    return edit


@pytest.mark.parametrize("name, edit, reason", [
    ("camel", _set("workload.prompts", [-5, -1.0, 0.0]), "workload.prompts[0] = -5 must be >= 0"),
    ("camel", _set("board.time.xty", [1e308] * 15), "board.time.xty[0] = 1e+308 must be <= 1e+100"),
    ("camel", _set("board.time.xty", [0.0] * 16), "board.time.xty has shape (16,), expected (15,)"),
    ("camel", _set("board.energy.xtx.0.1", 2.0), "board.energy.xtx[0, 1] = 2.0 differs from xtx[1, 0] = 0.0"),
    ("camel", _set("board.time.xtx", (np.eye(15) + 2 * np.eye(15, k=1) + 2 * np.eye(15, k=-1)).tolist()),
     "board.time.xtx is not positive semi-definite"),
    ("camel", _set("board.time.yty", -1.0), "board.time.yty = -1.0 must be >= 0"),
    ("camel", _set("workload.finished", 3.5), "workload.finished = 3.5 is not a whole number"),
    ("camel", _set("workload.moments.1.1", float("1e300")), "workload.moments[1, 1] = 1e+300 must be <= 1e+14"),
    ("camel", _set("correction.capacity", [5.0, 0.001]), "correction.capacity[0] = 5.0 exceeds log(2)"),
    ("camel", lambda s: s["correction"].pop("weight"), "correction.weight is missing"),
    ("camel-ts", _set("stats.n.0.1", -1.0), "stats.n[0, 1] = -1.0 must be >= 0"),
    ("camel-ts", _set("warm_mean.2", "x"), "warm_mean[2] = 'x' is not a number"),
    ("camel-ts", _set("stats.xbar.0.0", "1.5"), "stats.xbar holds something other than numbers"),
    ("ts", _set("latency.xbar.0.0", 1e200), "latency.xbar[0, 0] = 1e+200 must be <= 1e+100"),
    ("zeus-ts", _set("sums.1", [2.0, 10.0, 1.0]), "sums[1, 1] = 10.0 exceeds sqrt(count x sum of squares)"),
    ("ucb", _set("stats.m2", [0.0, 0.0]), "stats.m2 has shape (2,), expected (9,)"),
])
def test_a_value_no_run_could_learn_is_corrupt_and_nothing_is_half_loaded(tmp_path, caplog, name, edit,
                                                                           reason) -> None:
    path = tmp_path / "s.json"
    _tampered(path, name, edit)
    policy = _policy(name)
    before = json.dumps(policy.state_dict(), sort_keys=True)
    loader = _store(path, name=name)
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        assert loader.load_into(policy) is False
    assert [p.split("-")[0] for p in os.listdir(tmp_path)] == ["s.json.corrupt"]
    [line] = [r.getMessage() for r in caplog.records]
    assert f"is corrupt (policy rejected the state ({reason}" in line, line
    assert loader.load_outcome.startswith(f"started cold: the learned state in {path} is corrupt (policy "
                                          f"rejected the state ({reason}")
    assert json.dumps(policy.state_dict(), sort_keys=True) == before  # as fresh as it was


def test_nan_in_the_file_is_corrupt_not_a_crash(tmp_path) -> None:
    path = tmp_path / "s.json"
    _store(path, name="camel").save(_policy("camel"))
    path.write_text(path.read_text().replace('"yty": 0.0', '"yty": NaN', 1))
    loader = _store(path, name="camel")
    assert loader.load_into(_policy("camel")) is False
    assert "is corrupt (policy_state holds a number JSON does not allow" in loader.load_outcome


@pytest.mark.parametrize("field, value, reason", [
    ("prompts", [-5, -1.0, 0.0], "workload.prompts[0] = -5 must be >= 0"),
    ("xty", 1e308, "board.time.xty[0] = 1e+308 must be <= 1e+100"),
])
def test_the_issue_state_files_start_cold_and_the_run_goes_on(tmp_path, caplog, field, value, reason) -> None:
    """The issue's two files (checksums matching): before, the first served a few requests and
    then raised ZeroDivisionError in the engine core, the second a LinAlgError at the first
    decision. Now each is moved aside with one line and the run serves on from a cold start."""
    from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork
    from camel_vllm.wiring.build import EngineLimits, build_controller

    path = tmp_path / "state.json"
    config = CamelConfig.from_mapping({"device": "emulated", "policy": "camel", "state_path": str(path),
                                       "batch_sizes": [4, 8], "epoch_iterations": 4,
                                       "policy_params": {"warmup_iterations": 8, "warmup_requests": 4}})
    build_controller(config, EngineLimits(8), with_metrics=False).close()  # a state file, as a run leaves it
    payload = json.loads(path.read_text())
    state = payload["policy_state"]
    if field == "prompts":
        state["workload"]["prompts"] = value
    else:
        state["board"]["time"]["xty"] = [value] * len(state["board"]["time"]["xty"])
    payload["checksum"] = _checksum(state)
    path.write_text(json.dumps(payload))
    with caplog.at_level(logging.INFO, logger="vllm.camel"):
        controller = build_controller(config, EngineLimits(8), with_metrics=False)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and f"is corrupt (policy rejected the state ({reason}))" in warnings[0]
        fresh = make_policy(config, controller.arms, num_contexts=controller.context_model.num_contexts)
        assert json.dumps(controller.policy.state_dict(), sort_keys=True) == json.dumps(fresh.state_dict(),
                                                                                         sort_keys=True)
        now_s = 0.0
        for n in range(60):  # past the warm-up: model-based decisions
            rid = f"r{n}"
            controller.request_arrived(rid, now_s, 64)
            for tokens in (64, 1, 1):
                controller.begin_iteration(EngineSnapshot(now_s, 1, 0, 0))
                now_s += 0.05
                controller.end_iteration(now_s, IterationWork({rid: tokens}, 64 if tokens == 64 else 0,
                                                              1 if tokens == 1 else 0, 64))
            controller.request_finished(FinishedRequest(rid, now_s - 0.15, now_s, 64, 2, now_s - 0.15))
        assert controller.failed_policy is None and controller.updates == 60
        assert controller.policy.model_decisions > 0
    finally:
        controller.close()
    assert sorted(p.split("-")[0] for p in os.listdir(tmp_path)) == ["state.json", "state.json.corrupt"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ----------------------------------------- another policy's state is foreign (issue 23, item 3)
@pytest.mark.parametrize("saved, loading", [("camel-ts", "camel"), ("camel", "camel-ts")])
def test_another_policys_state_is_foreign_and_says_whose(tmp_path, saved, loading) -> None:
    path = tmp_path / "s.json"
    _store(path, name=saved).save(_policy(saved))
    loader = _store(path, name=loading)
    assert loader.load_into(_policy(loading)) is False
    assert f"is foreign (written by policy {saved}, this run is {loading}), moved to" in loader.load_outcome
    assert [p.split("-")[0] for p in os.listdir(tmp_path)] == ["s.json.foreign"]


def _slo(inner: str):
    config = CamelConfig(policy="slo", slo=SLOConfig(), policy_params={"inner": inner})
    return config, make_policy(config, ARMS, num_contexts=6)


@pytest.mark.parametrize("saved, loading", [("camel-ts", "camel"), ("camel", "camel-ts")])
def test_slo_around_another_inner_policy_is_foreign_not_corrupt(tmp_path, saved, loading) -> None:
    path = tmp_path / "s.json"
    config, policy = _slo(saved)
    PolicyStateStore(str(path), config=config, arms=ARMS, device_info=ORIN).save(policy)
    config, policy = _slo(loading)
    loader = PolicyStateStore(str(path), config=config, arms=ARMS, device_info=ORIN)
    assert loader.load_into(policy) is False
    assert (f"is foreign (written by policy slo+{saved}, this run is slo+{loading}), moved to"
            in loader.load_outcome)
    # A file from before the policy's name was recorded: told apart by the kind of state.
    [moved] = os.listdir(tmp_path)
    payload = json.loads((tmp_path / moved).read_text())
    del payload["meta"]["written_by"]
    path.write_text(json.dumps(payload))
    assert loader.load_into(_slo(loading)[1]) is False
    kinds = {"camel": "model-based", "camel-ts": "nig-thompson"}
    assert (f"is foreign (holds a slo/{kinds[saved]} state, this run's policy slo+{loading} keeps a "
            f"slo/{kinds[loading]} state)" in loader.load_outcome)
