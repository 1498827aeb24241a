"""Faults at the device, end to end through the controller, on fake JetPack sysfs trees.

- ``rails: all`` on a real INA3221 layout (the driver's channel 7, "sum of shunt voltages",
  has ``in7_input`` but no ``curr7_input``) measures energy; a sensor that never reads is
  reported once (a line and ``camel_device_errors_total{kind="sensor"}``) and nothing is
  learned from the 0 J it would give.
- A rail that disappears for 3 s mid-run: the requests that straddle the gap are reported
  but not learned from, the policy's ``observe_iteration`` gets ``energy_j=None`` for the gap,
  and camel's change detector does not fire (it did in 2 of 2 runs before).
- A clock this process cannot write (EACCES, read-only file system) is one line naming what
  to do, and ``camel_device_errors_total{kind="permission"}`` counts it.
- A process killed with SIGKILL while the clock is pinned: the next start restores the
  settings the first start found, and says so in one line.

The controller, policies, device backend and metrics tally are the real ones; only time is
a hand-advanced clock shared by the device's power sampler and the engine loop below.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from camel_vllm.core.config import CamelConfig
from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork
from camel_vllm.devices.jetson.device import PERMISSION_HINT, JetsonDevice
from camel_vllm.devices.sampler import FAILING_AFTER_READS
from camel_vllm.policies.base import Policy
from camel_vllm.policies.model_based.policy import ModelBasedPolicy
from camel_vllm.testing.fake_sysfs import build_fake_orin_tree
from camel_vllm.wiring.build import EngineLimits, build_controller
from camel_vllm.policies.decision import Deadline

REPO = Path(__file__).resolve().parents[2]
#: Seconds per engine iteration in the loop below (an emulated-Orin decode step is ~40 ms).
STEP_S = 0.04


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class IterationRecorder:
    """Keeps every ``observe_iteration`` energy the controller hands ``policy`` (the controller
    is under test), then hands it on: the hook is wrapped on the policy itself."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        self.inner = policy
        self.clock = clock
        self.iteration_energy: list[tuple[float, float | None]] = []
        hook = policy.observe_iteration

        def observe_iteration(arm_index, work, duration_s, energy_j=None, **step) -> None:
            self.iteration_energy.append((self.clock.now_s, energy_j))
            hook(arm_index, work, duration_s, energy_j, **step)

        policy.observe_iteration = observe_iteration  # type: ignore[method-assign]


def _learned_energy(policy: Any) -> float:
    """How much energy evidence the policy holds: camel counts iterations its board's energy
    regression learned from, camel-ts the request costs in its posteriors."""
    if isinstance(policy, ModelBasedPolicy):
        policy.maintain(Deadline(0))  # folds buffered iterations into the board (what runs between decisions)
        policy.board.fold()
        return policy.model_readout().iterations["energy"]
    return float(policy.stats.n.sum())


def _controller(root: Path, clock: Clock, **camel: Any):
    config = CamelConfig.from_mapping({"device": "jetson", "sysfs_root": str(root), "metrics_port": 0,
                                       "batch_sizes": [4, 8], "epoch_iterations": 16, **camel})
    device = JetsonDevice(str(root), rails=config.rails, sample_hz=50.0, clock=clock, start_sampler=False,
                          install_exit_restore=False)
    return build_controller(config, EngineLimits(8), device=device)


def _serve(controller, clock: Clock, seconds: float, *, events: dict[float, Any] | None = None) -> list:
    """Eight requests always in the engine, 30 decode tokens each; ``events`` run at their time."""
    outcomes = []
    running: dict[str, list] = {}
    pending = sorted((events or {}).items())
    n = 0
    end_s = clock.now_s + seconds
    start_s = clock.now_s
    while clock.now_s < end_s:
        while pending and clock.now_s - start_s >= pending[0][0]:
            pending.pop(0)[1]()
        while len(running) < 8:
            rid = f"r{n}"
            n += 1
            controller.request_arrived(rid, clock.now_s, 64)
            running[rid] = [clock.now_s, 0]
        begin_s = clock.now_s
        controller.begin_iteration(EngineSnapshot(begin_s, len(running), 0, 0))
        clock.now_s += STEP_S
        controller.end_iteration(clock.now_s, IterationWork({r: 1 for r in running}, 0, len(running), 64 * 8))
        for rid in list(running):
            running[rid][1] += 1
            if running[rid][1] >= 30:
                arrival_s, _ = running.pop(rid)
                outcome = controller.request_finished(
                    FinishedRequest(rid, arrival_s, clock.now_s, 64, 30, arrival_s + STEP_S))
                outcomes.append(outcome)
    return outcomes


def _errors(controller) -> dict[str, int]:
    [exporter] = [x for x in controller.listeners if hasattr(x, "registry")]
    return {sample.labels["kind"]: int(sample.value) for family in exporter.registry.collect()
            for sample in family.samples if sample.name == "camel_device_errors_total"}


# --------------------------------------------------------------------------------- item 2
def test_rails_all_skips_the_sum_channel_and_measures(tmp_path: Path) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)  # in7 "sum of shunt voltages": in7_input, no curr7_input
    assert (tree.hwmon["1-0040"] / "in7_input").exists() and not (tree.hwmon["1-0040"] / "curr7_input").exists()
    clock = Clock()
    controller = _controller(tmp_path, clock, rails="all", policy="camel")
    try:
        assert [r.label for r in controller.device.rails] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0",
                                                               "VDDQ_VDD2_1V8AO"]
        outcomes = _serve(controller, clock, 10.0)
        # 13.2 W over the run (the fake tree's quiet AGX Orin reading), all of it measured and credited
        assert controller.device.energy_j() == pytest.approx(13.2 * 10.0, rel=0.02)
        assert outcomes and all(o.energy_measured and o.energy_j > 0 for o in outcomes)
        assert controller.unmeasured_requests == 0 and _errors(controller)["sensor"] == 0
    finally:
        controller.close()


@pytest.mark.parametrize("policy_name", ["camel", "camel-ts"])
def test_a_sensor_that_never_reads_is_reported_once_and_nothing_is_learned(tmp_path: Path, caplog,
                                                                          policy_name: str) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    _, current = tree.rail_paths("VDD_GPU_SOC")
    tree.fail(current, read="EIO")
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="vllm.camel"):
        controller = _controller(tmp_path, clock, policy=policy_name)
        try:
            outcomes = _serve(controller, clock, 10.0)
            policy = controller.policy
            assert outcomes and not any(o.energy_measured for o in outcomes)
            assert all(o.cost is None for o in outcomes)
            assert _learned_energy(policy) == 0.0  # nothing computed from 0 J reached the policy
            if policy_name == "camel":  # the step times it did measure are learned
                assert policy.model_readout().iterations["time"] > 0
            assert controller.unmeasured_requests == len(outcomes)
            assert _errors(controller)["sensor"] == 1
        finally:
            controller.close()
    lines = [r.getMessage() for r in caplog.records if "keeps failing" in r.getMessage()]
    assert lines == [f"camel: camel-ina3221 keeps failing ({FAILING_AFTER_READS} reads in a row: [Errno 5] "
                     f"Input/output error: '{current}'); energy is not measured until it reads again, and "
                     "requests served meanwhile are not learned from"]


# --------------------------------------------------------------------------------- item 7
@pytest.mark.parametrize("policy_name", ["camel", "camel-ts"])
def test_a_rail_gap_is_not_learned_from_and_resets_nothing(tmp_path: Path, caplog, policy_name: str) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    tree.set_rail_power("VDD_GPU_SOC", 12.0)
    clock = Clock()
    controller = _controller(tmp_path, clock, policy=policy_name, seed=3)
    policy = IterationRecorder(controller.policy, clock)
    gap = (30.0, 33.0)
    learned_at_gap: list[float] = []
    events = {
        gap[0]: lambda: (learned_at_gap.append(_learned_energy(policy.inner)),
                         tree.hide_rail("VDD_GPU_SOC")),
        gap[1]: lambda: tree.show_rail("VDD_GPU_SOC"),
    }
    start_s = clock.now_s
    try:
        with caplog.at_level(logging.INFO, logger="vllm.camel"):
            outcomes = _serve(controller, clock, 60.0, events=events)
        inner = policy.inner
        assert _learned_energy(inner) > learned_at_gap[0] > 0  # learning went on across the gap
        if policy_name == "camel-ts":
            assert inner.changes_detected == 0  # no CUSUM alarm, nothing relearned
        else:  # the board learned energy from exactly the iterations that had it
            assert _learned_energy(inner) == len([e for _, e in policy.iteration_energy if e is not None])
        # the gap's iterations were handed to the policy as unmeasured, and only around the gap
        unmeasured = [t - start_s for t, e in policy.iteration_energy if e is None]
        assert unmeasured and gap[0] <= min(unmeasured) and max(unmeasured) <= gap[1] + 2 * STEP_S
        assert all(e is not None and e > 0 for t, e in policy.iteration_energy
                   if not gap[0] <= t - start_s <= gap[1] + 2 * STEP_S)
        # requests that straddle the gap are reported, not credited; every other one is credited
        straddling = [o for o in outcomes if o.request.arrival_s - start_s < gap[1] + 2 * STEP_S
                      and o.request.finish_s - start_s > gap[0]]
        assert {o.request.request_id for o in outcomes if not o.energy_measured} == \
            {o.request.request_id for o in straddling}
        assert controller.unmeasured_requests == len(straddling) > 0
        assert _errors(controller)["sensor"] == 1
    finally:
        controller.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([m for m in messages if "keeps failing" in m]) == 1
    assert len([m for m in messages if "reads again after 3.0 s" in m]) == 1


# --------------------------------------------------------------------------------- item 3
@pytest.mark.parametrize("code, why", [("EACCES", "Permission denied"), ("EROFS", "Read-only file system")])
def test_a_clock_that_cannot_be_written_is_one_line_and_counted(tmp_path: Path, caplog, code: str, why: str) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    for path in (tree.min_freq_path, tree.max_freq_path, tree.governor_path):
        tree.fail(path, write=code)
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        controller = _controller(tmp_path, clock, policy="camel")
    try:
        assert controller.batch_only and controller.arms.frequencies_hz == (None,)
        assert _errors(controller)["permission"] == 1
        _serve(controller, clock, 2.0)
        assert (tree.min_freq(), tree.max_freq()) == (306000000, 930750000)  # nothing written
    finally:
        controller.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == [f"camel: jetson: cannot write {tree.class_link / 'min_freq'} ({why}): {PERMISSION_HINT}; "
                     "continuing with batch-only arms"]


# --------------------------------------------------------------------------------- item 4
HOLDER = textwrap.dedent(
    """
    import sys, time
    from camel_vllm.devices.jetson.device import JetsonDevice
    device = JetsonDevice(sys.argv[1], sample_hz=100)
    device.set_frequency_hz(306e6)
    print("pinned", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def test_kill_9_then_the_next_start_restores_the_first_starts_settings(tmp_path: Path, caplog) -> None:
    root = tmp_path / "root"
    tree = build_fake_orin_tree(root, 6, governor="nvhost_podgov")
    tree.min_freq_path.write_text("408000000\n")  # an nvpmodel-like range, not the full span
    tree.max_freq_path.write_text("816000000\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "pinned", holder.stderr.read()
        assert (tree.min_freq(), tree.max_freq()) == (306000000, 306000000)
        holder.send_signal(signal.SIGKILL)  # nothing can restore on SIGKILL
        assert holder.wait(timeout=20) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
    assert (tree.min_freq(), tree.max_freq()) == (306000000, 306000000)  # left pinned
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        device = JetsonDevice(str(root), start_sampler=False, install_exit_restore=False)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == [f"camel: the GPU clock at {tree.class_link} was left at min_freq 306000000 max_freq 306000000 "
                     f"governor nvhost_podgov by an earlier run (pid {holder.pid}) that did not restore it; restored "
                     "min_freq 408000000 max_freq 816000000 governor nvhost_podgov found at its start"]
    assert (tree.min_freq(), tree.max_freq(), tree.governor()) == (408000000, 816000000, "nvhost_podgov")
    device.set_frequency_hz(612e6)
    device.close()  # and this run restores the first start's settings, not 306/306
    assert (tree.min_freq(), tree.max_freq(), tree.governor()) == (408000000, 816000000, "nvhost_podgov")
    assert list((root / "run" / "camel-vllm").iterdir()) == []  # no record left after a clean exit
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vllm.camel"):
        JetsonDevice(str(root), start_sampler=False, install_exit_restore=False).close()
    assert not caplog.records  # a clean start says nothing


def test_a_record_of_a_live_process_is_not_acted_on(tmp_path: Path, caplog) -> None:
    root = tmp_path / "root"
    tree = build_fake_orin_tree(root, 6)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "pinned"
        device = JetsonDevice(str(root), start_sampler=False, install_exit_restore=False)
        assert (tree.min_freq(), tree.max_freq()) == (306000000, 306000000)  # the live holder's pin stands
        device.set_frequency_hz(510e6)
        device.close()  # restores what the holder found, and leaves the holder's record alone
        assert (tree.min_freq(), tree.max_freq()) == (306000000, 930750000)
        assert len(list((root / "run" / "camel-vllm").iterdir())) == 1
    finally:
        holder.kill()
        holder.wait(timeout=20)
