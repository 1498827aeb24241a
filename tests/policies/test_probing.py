"""Probe runs: camel's board model learns how decode follows the clock from a few decode steps
at clocks it has not played, taken only while nobody waits."""

from __future__ import annotations

import math

from camel_vllm.bench.matrix import cell_trace
from camel_vllm.bench.sim import PolicySpec, SimSetup, run_one
from camel_vllm.core.events import Arm, EngineSnapshot, IterationWork
from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile
from camel_vllm.devices.emulator.roofline import PerformanceModel
from camel_vllm.policies.model_based import policy as policy_module
from camel_vllm.policies.model_based.probing import (
    PROBE_ENOUGH_STEPS,
    PROBE_EVERY_STEPS,
    PROBE_RUN_STEPS,
    Prober,
    probe_clocks,
)
from camel_vllm.sim.engine import EngineConfig
from camel_vllm.traces import transforms

MHZ = 1e6
DECODE = IterationWork(tokens_by_request={"d": 1}, num_prefill_tokens=0, num_decode_tokens=16,
                       context_tokens=16_000)
PREFILL = IterationWork(tokens_by_request={"p": 900}, num_prefill_tokens=900, num_decode_tokens=16,
                        context_tokens=16_000)
TOP = Arm(1980 * MHZ, 256)
NOBODY_WAITS = EngineSnapshot(now_s=0.0, num_running=16, num_waiting=0)
SOMEONE_WAITS = EngineSnapshot(now_s=0.0, num_running=16, num_waiting=3)


def _serve(prober: Prober, steps: int, work: IterationWork = DECODE,
           snapshot: EngineSnapshot = NOBODY_WAITS) -> list[float | None]:
    clocks = []
    for _ in range(steps):
        clock = prober.step_frequency(work, TOP, snapshot)
        prober.observe(clock, work)
        clocks.append(clock)
    return clocks


def test_the_lowest_clock_and_the_one_halfway_in_time_are_probed() -> None:
    h100 = load_device_profile("h100-sxm").frequencies_hz
    low, middle = probe_clocks(h100)
    assert low == min(h100)
    halfway = 2.0 / (1.0 / min(h100) + 1.0 / max(h100))  # 1/f halfway between the ends
    assert all(abs(1 / middle - 1 / halfway) <= abs(1 / f - 1 / halfway) for f in h100 if f not in (min(h100),
                                                                                                     max(h100)))
    assert probe_clocks([306 * MHZ, 930.75 * MHZ]) == []  # two clocks: the basis needs no probe


def test_a_run_of_decode_steps_at_the_lowest_clock_comes_only_while_nobody_waits() -> None:
    prober = Prober([660 * MHZ, 1020 * MHZ, 1500 * MHZ, 1980 * MHZ])
    assert set(_serve(prober, 3 * PROBE_EVERY_STEPS, snapshot=SOMEONE_WAITS)) == {TOP.freq_hz}
    clocks = _serve(prober, PROBE_RUN_STEPS + 1)
    assert clocks == [660 * MHZ] * PROBE_RUN_STEPS + [TOP.freq_hz]
    assert set(_serve(prober, PROBE_EVERY_STEPS - PROBE_RUN_STEPS - 2)) == {TOP.freq_hz}  # one run per period


def test_a_prefill_step_ends_a_run_at_the_arms_own_clock() -> None:
    prober = Prober([660 * MHZ, 1020 * MHZ, 1980 * MHZ])
    _serve(prober, PROBE_EVERY_STEPS)
    assert _serve(prober, 2) == [660 * MHZ, 660 * MHZ]
    assert _serve(prober, 1, PREFILL) == [TOP.freq_hz]
    assert _serve(prober, 1) == [TOP.freq_hz]


def test_probing_stops_once_both_clocks_have_their_steps() -> None:
    prober = Prober([660 * MHZ, 1020 * MHZ, 1980 * MHZ])
    clocks = _serve(prober, 40 * PROBE_EVERY_STEPS)
    assert clocks.count(660 * MHZ) >= PROBE_ENOUGH_STEPS and clocks.count(1020 * MHZ) >= PROBE_ENOUGH_STEPS
    assert prober.done and set(_serve(prober, 4 * PROBE_EVERY_STEPS)) == {TOP.freq_hz}
    assert prober.steps <= 2 * (PROBE_ENOUGH_STEPS + PROBE_RUN_STEPS)


def test_probes_teach_the_board_model_the_lowest_clocks_decode_speed(monkeypatch) -> None:
    """On the emulated H100 (decode memory-bound: at a third of the top clock little slower),
    camel serving long prompts at half load holds the default arm; without probes its board
    model keeps the prior's shape at the lowest clock (decode ~2 x slower), with them it learns
    the emulator's speed there."""
    law = PerformanceModel(load_device_profile("h100-sxm"), load_model_profile("llama-3.1-8b"))
    setup = SimSetup.make(device_profile="h100-sxm", model_profile="llama-3.1-8b", seed=0,
                          engine=EngineConfig(256, 8192))
    trace = transforms.target_rps(cell_trace("synthetic:long-prompt", 0, 150), 1.9)
    boards = {}
    init = policy_module.ModelBasedPolicy.__init__

    def remembered(self, *args, **kwargs):
        init(self, *args, **kwargs)
        boards[self.params.probe] = self.board
        boards["low"] = float(self.board.clocks_hz[0])  # the lowest of the arms' clocks

    monkeypatch.setattr(policy_module.ModelBasedPolicy, "__init__", remembered)
    for probe in (True, False):
        run_one(setup, PolicySpec("camel", "camel", {"probe": probe}), trace)
    decode = IterationWork(tokens_by_request={}, num_prefill_tokens=0, num_decode_tokens=24, context_tokens=140_000)
    low = boards.pop("low")
    true_s = law.iteration_time_s(decode, low)
    errors = {probe: abs(math.log(board.predict(low, decode)[0] / true_s)) for probe, board in boards.items()}
    assert errors[True] < 0.1 < 0.3 < errors[False], errors
