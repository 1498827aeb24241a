"""The emulated Orin: published shapes of the roofline model, time modes, monotonic energy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from camel_vllm.core.config import CamelConfig
from camel_vllm.core.events import IterationWork
from camel_vllm.devices.base import DevicePermissionError
from camel_vllm.devices.emulator.device import EmulatedDevice
from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile
from camel_vllm.devices.emulator.roofline import PerformanceModel
from camel_vllm.devices.registry import make_device

MHZ = 1e6


def decode(batch: int = 1, context: int = 512) -> IterationWork:
    return IterationWork({f"r{i}": 1 for i in range(batch)}, 0, batch, context_tokens=batch * context)


def prefill(tokens: int = 512, requests: int = 1) -> IterationWork:
    return IterationWork({f"r{i}": tokens for i in range(requests)}, tokens * requests, 0)


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def model(device: str = "orin-agx-32gb", name: str = "llama-3.2-1b") -> PerformanceModel:
    return PerformanceModel(load_device_profile(device), load_model_profile(name))


@pytest.mark.parametrize("name", ["llama-3.2-1b", "qwen-2.5-3b"])
def test_roofline_profile_decode_flat_above_714_and_steep_below(name: str) -> None:
    pm = model("orin-agx-32gb-roofline", name=name)
    for batch in (1, 8, 28):
        t = {f: pm.iteration_time_s(decode(batch), f * MHZ) for f in (306, 612, 714, 930.75)}
        assert 0.0 < 1 - t[930.75] / t[714] < 0.20  # +30% clock cuts decode time < 20%
        assert 1 - t[612] / t[306] > 0.25  # steep below the knee


@pytest.mark.parametrize("device", ["orin-agx-32gb", "orin-agx-64gb"])
def test_recalibrated_orin_decode_follows_the_clock_below_a_sharp_knee(device: str) -> None:
    """The published Orin-class shape (docs/devices.md, "Fidelity"): decode time close to 1/f
    below ~0.93 x f_max and nearly flat above; a decode token costs about the same energy at
    every clock below the knee (power falls as the clock does)."""
    pm = model(device)
    f_max = pm.device.max_frequency_hz
    for batch in (1, 8):
        t = {r: pm.iteration_time_s(decode(batch), r * f_max) for r in (0.4, 0.6, 0.8, 0.93, 1.0)}
        e = {r: t[r] * pm.iteration_power_w(decode(batch), r * f_max) for r in t}
        assert t[0.6] / t[1.0] == pytest.approx(0.93 / 0.6, rel=0.05)
        assert t[0.93] / t[1.0] < 1.06  # above the knee the clock barely matters
        assert max(e[r] / e[1.0] for r in (0.4, 0.6, 0.8)) - min(e[r] / e[1.0] for r in (0.4, 0.6, 0.8)) < 0.1
        assert all(0.8 < e[r] / e[1.0] < 1.0 for r in (0.4, 0.6, 0.8))


def test_roofline_profile_64gb_decode_shape() -> None:
    pm = model("orin-agx-64gb-roofline")
    cut = 1 - pm.iteration_time_s(decode(), 1300.5 * MHZ) / pm.iteration_time_s(decode(), 714 * MHZ)
    assert cut == pytest.approx(0.16, abs=0.05)  # the roofline profile's (unsourced) 714 -> 1300 MHz shape


@pytest.mark.parametrize("device", ["orin-agx-32gb", "orin-agx-64gb", "orin-agx-32gb-roofline", "h100-sxm"])
def test_prefill_close_to_linear(device: str) -> None:
    pm = model(device)
    f_max = pm.device.max_frequency_hz
    low = min(pm.device.frequencies_hz)
    ratio = pm.iteration_time_s(prefill(512, 4), low) / pm.iteration_time_s(prefill(512, 4), f_max)
    assert ratio == pytest.approx(f_max / low, rel=0.10)


def test_h100_decode_is_memory_bound_and_cheaper_at_lower_clocks() -> None:
    """What the published H100/H200 statements say: decode's time barely moves from 1980 down to
    about 0.3 x f_max while its energy falls (docs/devices.md, "Fidelity")."""
    pm = model("h100-sxm", "llama-3.1-8b")
    f_max = pm.device.max_frequency_hz
    for batch in (1, 64):
        t1, e1 = pm.iteration_time_s(decode(batch, 1024), f_max), None
        e1 = t1 * pm.iteration_power_w(decode(batch, 1024), f_max)
        t = pm.iteration_time_s(decode(batch, 1024), 0.5 * f_max)
        e = t * pm.iteration_power_w(decode(batch, 1024), 0.5 * f_max)
        assert t / t1 < 1.02 and 0.6 < e / e1 < 0.8
    assert pm.idle_power_w(345 * MHZ) == pytest.approx(71.8, abs=0.5)
    assert pm.idle_power_w(f_max) == pytest.approx(121.7, abs=0.5)
    assert pm.iteration_power_w(prefill(8192), f_max) == pytest.approx(700, rel=0.02)


def test_power_envelope_32gb() -> None:
    pm = model()
    assert pm.power_w(930.75 * MHZ, 1.0) == pytest.approx(40.4, abs=0.5)  # MAXN stress test
    for f in pm.device.frequencies_hz:
        assert 4.0 <= pm.idle_power_w(f) <= 6.5  # quiet about 5.2 W
    busy = pm.iteration_power_w(prefill(512, 4), 930.75 * MHZ)
    assert busy == pytest.approx(40.4, abs=3.0)
    # decode draws less than prefill (published, Orin Nano Super: prefill 1.03-1.52x decode's power)
    assert 0.65 * busy < pm.iteration_power_w(decode(), 930.75 * MHZ) < 0.97 * busy
    powers = [pm.power_w(f, 1.0) for f in pm.device.frequencies_hz]
    assert powers == sorted(powers)


def test_64gb_steps_and_ceiling() -> None:
    pm = model("orin-agx-64gb")
    assert pm.device.frequencies_hz[-1] == 1300.5 * MHZ and len(pm.device.frequencies_hz) == 11
    assert pm.device.power_ceiling_w == 60.0
    assert pm.power_w(1300.5 * MHZ, 1.0) <= 60.0
    assert pm.max_context_tokens == 131072
    assert model(name="qwen-2.5-3b").max_context_tokens == 32768


def test_kv_reads_and_batch_raise_time() -> None:
    pm = model()
    assert pm.iteration_time_s(decode(8, 4096), 612 * MHZ) > pm.iteration_time_s(decode(8, 128), 612 * MHZ)
    # larger batches cut time per token (published: energy per token falls with batch)
    assert pm.iteration_time_s(decode(16), 612 * MHZ) / 16 < pm.iteration_time_s(decode(1), 612 * MHZ) / 4


def test_relative_mode_stretches_by_modelled_slowdown() -> None:
    clock = Clock()
    dev = EmulatedDevice(load_device_profile("orin-agx-32gb"), load_model_profile("llama-3.2-1b"), clock=clock)
    assert dev.iteration_done(decode(), 0.05) == 0.0  # at f_max no stretch
    dev.set_frequency_hz(306 * MHZ)
    pm = dev.model
    expected = 0.05 * (pm.iteration_time_s(decode(), 306 * MHZ) / pm.iteration_time_s(decode(), 930.75 * MHZ) - 1)
    extra = dev.iteration_done(decode(), 0.05)
    assert extra == pytest.approx(expected + 0.005)  # plus the switch latency, once
    assert dev.iteration_done(decode(), 0.05) == pytest.approx(expected)


def test_absolute_mode_returns_modelled_time() -> None:
    clock = Clock()
    dev = EmulatedDevice(load_device_profile("orin-agx-32gb"), load_model_profile("llama-3.2-1b"),
                         clock=clock, time_mode="absolute")
    t = dev.iteration_done(prefill(), 0.0)
    assert t == pytest.approx(dev.model.iteration_time_s(prefill(), 930.75 * MHZ))
    assert dev.iteration_done(prefill(), t + 1.0) == 0.0
    assert dev.set_frequency_hz(600 * MHZ) == 612 * MHZ  # nearest step
    assert dev.current_frequency_hz() == 612 * MHZ
    assert dev.iteration_done(decode(), 0.0) == pytest.approx(dev.model.iteration_time_s(decode(), 612 * MHZ) + 0.005)


def test_energy_books_busy_and_idle_power() -> None:
    clock = Clock()
    dev = EmulatedDevice(load_device_profile("orin-agx-32gb"), load_model_profile("llama-3.2-1b"),
                         clock=clock, time_mode="absolute", seed=3)
    e0 = dev.energy_j()
    t = dev.iteration_done(prefill(512, 4), 0.0)
    e1 = dev.energy_j()  # includes the iteration the adapter is about to wait for
    assert (e1 - e0) / t == pytest.approx(dev.model.iteration_power_w(prefill(512, 4), 930.75 * MHZ), rel=0.10)
    clock.now_s += t + 10.0  # then 10 s quiet
    e2 = dev.energy_j()
    assert (e2 - e1) / 10.0 == pytest.approx(dev.model.idle_power_w(930.75 * MHZ), rel=1e-6)


def test_mid_iteration_reads_do_not_change_the_total() -> None:
    def run(read_mid: bool) -> float:
        clock = Clock()
        dev = EmulatedDevice(load_device_profile("orin-agx-32gb"), load_model_profile("llama-3.2-1b"),
                             clock=clock, seed=1)
        dev.energy_j()
        clock.now_s += 0.03
        if read_mid:
            dev.energy_j()
        clock.now_s += 0.02
        dev.iteration_done(prefill(), 0.05)
        return dev.energy_j()

    assert run(True) == pytest.approx(run(False))


def test_energy_monotonic_under_random_use_and_threads() -> None:
    clock = Clock()
    dev = EmulatedDevice(load_device_profile("orin-agx-64gb"), load_model_profile("qwen-2.5-3b"), clock=clock, seed=7)
    rng = np.random.default_rng(0)
    readings: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            readings.append(dev.energy_j())

    thread = threading.Thread(target=reader)
    thread.start()
    seen = [dev.energy_j()]
    freqs = dev.available_frequencies_hz()
    for _ in range(2000):
        action = rng.integers(3)
        if action == 0:
            dev.set_frequency_hz(freqs[rng.integers(len(freqs))])
        elif action == 1:
            elapsed = float(rng.uniform(0, 0.05))
            clock.now_s += elapsed
            work = decode(int(rng.integers(1, 28))) if rng.random() < 0.7 else prefill(int(rng.integers(16, 1024)))
            clock.now_s += dev.iteration_done(work, elapsed)
        else:
            clock.now_s += float(rng.uniform(0, 0.1))
        seen.append(dev.energy_j())
    stop.set()
    thread.join()
    assert seen == sorted(seen) and readings == sorted(readings)
    assert seen[-1] > 0


def test_seeded_noise_on_power() -> None:
    def readings(seed: int) -> list[float]:
        dev = make_device(CamelConfig(device="emulated", seed=seed), clock=lambda: 0.0)
        return [dev.power_w() for _ in range(5)]

    assert readings(1) == readings(1)
    assert readings(1) != readings(2)
    assert np.std(readings(1)) > 0


def test_info_is_labelled_emulated_and_read_only_refuses() -> None:
    dev = make_device(CamelConfig(device="emulated", device_profile="orin-agx-64gb", model_profile="qwen-2.5-3b",
                                  emulation_time="absolute"))
    info = dev.info()
    assert info.energy_source == "emulated" and info.emulated and info.profile == "orin-agx-64gb"
    assert info.extra["time_mode"] == "absolute"
    ro = make_device(CamelConfig(device="emulated", read_only=True))
    with pytest.raises(DevicePermissionError):
        ro.set_frequency_hz(612 * MHZ)
    dev.close()
    ro.close()
