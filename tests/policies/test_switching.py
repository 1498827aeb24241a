"""What camel charges an arm whose prefill steps run at another clock for its clock switches:
the measured cost of a switch times the switches a prompt brings, counted from the workload's
own steps."""

from __future__ import annotations

import numpy as np
import pytest

from camel_vllm.core.events import IterationWork
from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile
from camel_vllm.devices.emulator.roofline import PerformanceModel
from camel_vllm.policies.model_based.board import BoardModel, segment_knots
from camel_vllm.policies.model_based.profile_prior import profile_prior
from camel_vllm.policies.model_based.projection import ArmGeometry, clock_steps, step_work, steady_start
from camel_vllm.policies.model_based.switching import PRIOR_PER_PROMPT, SwitchCost
from camel_vllm.policies.workload import LoadView

PREFILL = IterationWork(tokens_by_request={"p": 2000}, num_prefill_tokens=2000, num_decode_tokens=0,
                        context_tokens=0)
DECODE = IterationWork(tokens_by_request={"d": 1}, num_prefill_tokens=0, num_decode_tokens=20,
                       context_tokens=20_000)


def test_prompts_that_come_one_by_one_bring_two_switches_each() -> None:
    switching = SwitchCost(0.01)
    assert switching.per_prompt == PRIOR_PER_PROMPT
    for _ in range(400):
        switching.observe_prompt()
        switching.observe_step(PREFILL)
        for _ in range(6):
            switching.observe_step(DECODE)
    assert switching.per_prompt == pytest.approx(2.0, abs=0.05)


def _bursts(switching: SwitchCost, bursts: int = 40) -> SwitchCost:
    """Bursts of twenty prompts, each filling a run of twenty prefill steps between decode steps."""
    for _ in range(bursts):
        for _ in range(20):
            switching.observe_prompt()
        for _ in range(20):
            switching.observe_step(PREFILL)
        for _ in range(60):
            switching.observe_step(DECODE)
    return switching


def test_prompts_in_bursts_bring_few_switches() -> None:
    """Twenty prompts at once fill a run of prefill steps: two switches for the twenty."""
    assert _bursts(SwitchCost(0.01)).per_prompt == pytest.approx(0.1, abs=0.03)


def test_an_arm_with_another_prefill_clock_is_charged_the_switches_its_prompts_bring() -> None:
    """On the H100 board, the arm that decodes at the lowest clock and prefills at the top is
    charged 10 ms switches per prompt: with two per prompt (the prior) each prefill token costs
    the switches' share more than with none; with bursts (~0.1 per prompt) about a twentieth of it.
    The arm whose steps all run at one clock is charged nothing either way."""
    law = PerformanceModel(load_device_profile("h100-sxm"), load_model_profile("llama-3.1-8b"))
    freqs = sorted(law.device.frequencies_hz)
    low, top = freqs[0], freqs[-1]
    knots = segment_knots(256)
    board = BoardModel([low, top], knots=knots)
    board.set_prior(*profile_prior(law, [low, top], knots))
    coef = board.mean_coefficients()
    rows = np.stack([coef.time_s, coef.energy_j], axis=1)[None]  # (1, 2 clocks, 2, 5)
    geometry = ArmGeometry.of(np.array([256.0, 256.0]), np.array([0, 1]), knots, np.array([1, 1]))
    p, o = 2000.0, 20.0
    load = LoadView(5.0, 1.0, np.array([[1.0, p, o], [p, 2 * p * p, p * o], [o, p * o, 2 * o * o]]), p, 1.0)
    steps = clock_steps(geometry, rows, coef.time_s[-1][None], step_work(geometry, load))
    one_by_one, bursts, free = SwitchCost(0.01), _bursts(SwitchCost(0.01), 100), steady_start(geometry, steps, load)
    assert bursts.per_prompt < 0.15
    g_two = steady_start(geometry, steps, load, switch=one_by_one).g_t[0]
    g_few = steady_start(geometry, steps, load, switch=bursts).g_t[0]
    g_none = free.g_t[0]
    assert g_two[0] - g_none[0] == pytest.approx(2.0 * 0.01 / p, rel=1e-6)
    assert g_few[0] - g_none[0] == pytest.approx(bursts.per_prompt * 0.01 / p, rel=1e-6)
    assert g_two[1] == g_few[1] == g_none[1]  # the top clock for every step: no switch
