"""ArmSet: product order, default arm, run-time restriction."""

import pytest

from camel_vllm.core.arms import CAMEL_BATCH_SIZES, ArmSet, same_frequency
from camel_vllm.core.events import Arm, format_mhz

CAMEL_32GB_MHZ = (306, 408, 510, 612, 714, 816, 930.75)


def camel_grid() -> ArmSet:
    return ArmSet.product([m * 1e6 for m in CAMEL_32GB_MHZ], CAMEL_BATCH_SIZES)


def test_camel_grid_has_49_arms_frequency_major():
    arms = camel_grid()
    assert len(arms) == 49
    assert arms[0] == Arm(306e6, 4)
    assert arms[6] == Arm(306e6, 28)
    assert arms[7] == Arm(408e6, 4)
    assert arms[48] == Arm(930.75e6, 28)
    assert arms.index(Arm(612e6, 16)) == 3 * 7 + 3


def test_default_is_max_frequency_max_batch():
    arms = camel_grid()
    assert arms[arms.default_index()] == Arm(930.75e6, 28)


def test_labels_use_mhz_without_trailing_zeros():
    assert Arm(930.75e6, 24).label == "930.75/24"
    assert Arm(612e6, 8).label == "612/8"
    assert Arm(None, 8).label == "auto/8"
    assert format_mhz(1300.5e6) == "1300.5"


def test_disable_frequency_moves_default_and_keeps_one():
    arms = camel_grid()
    off = arms.disable_frequency(930.75e6)
    assert len(off) == 7
    assert arms[arms.default_index()] == Arm(816e6, 28)
    for mhz in CAMEL_32GB_MHZ[:-1]:
        arms.disable_frequency(mhz * 1e6)
    # The last frequency cannot be switched off: a choice always remains.
    assert {arms[i].freq_hz for i in arms.available_indices()} == {816e6}


def test_batch_only_keeps_the_frequency_in_force():
    arms = camel_grid()
    arms.restrict_to_batch_only(612e6)
    assert [arms[i] for i in arms.available_indices()] == [Arm(612e6, b) for b in CAMEL_BATCH_SIZES]


def test_batch_only_without_known_frequency_keeps_highest():
    arms = camel_grid()
    arms.restrict_to_batch_only(None)
    assert {arms[i].freq_hz for i in arms.available_indices()} == {930.75e6}


def test_empty_arm_set_is_rejected():
    with pytest.raises(ValueError):
        ArmSet(())


def test_one_frequency_tolerance_tells_steps_apart_on_every_backend():
    assert same_frequency(930.75 * 1e6, 930750000.0)  # config MHz against devfreq Hz
    assert same_frequency(1300.5e6, 1300500000.0) and same_frequency(612e6, 612e6 + 0.4e6)
    assert not same_frequency(612e6, 510e6)  # neighbouring Orin steps (>= 100 MHz apart)
    assert not same_frequency(1980e6, 1965e6)  # neighbouring NVML steps (15 MHz), even at the top
    assert not same_frequency(705e6, 690e6)
