"""Parsing and validation of camel-vllm's configuration (``--additional-config``, YAML).

Every bad value must raise :class:`ConfigError` whose message is one line naming the key
and the value; the engine-dependent checks (batch caps vs ``--max-num-seqs``, frequencies
vs the device) live in :mod:`camel_vllm.wiring.build` and are tested here too.
"""

from __future__ import annotations

import os

import pytest

from camel_vllm.core.config import CamelConfig, ConfigError, SLOConfig
from camel_vllm.devices.base import NullDevice
from camel_vllm.testing.fake_device import FakeDevice
from camel_vllm.wiring.build import EngineLimits, resolve_batch_sizes, resolve_frequencies_hz


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_defaults_and_additional_config():
    config = CamelConfig.from_additional_config(None)
    assert config == CamelConfig()
    assert config.policy == "camel" and config.cost == "edp" and config.batch_sizes == "auto"
    config = CamelConfig.from_additional_config({"camel": {"device": "emulated", "policy": "ucb", "seed": 3}})
    assert (config.device, config.policy, config.seed) == ("emulated", "ucb", 3)
    assert CamelConfig.from_additional_config({"other_plugin": {"x": 1}}) == CamelConfig()


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"devise": "jetson"}, 'camel config: devise="jetson": unknown key'),
        ({"cost": "money"}, 'camel config: cost="money": must be one of edp, edp-raw, weighted'),
        ({"alpha": 1.5}, "camel config: alpha=1.5: must be a number in [0, 1]"),
        ({"alpha": -0.01}, "camel config: alpha=-0.01: must be a number in [0, 1]"),
        ({"alpha": True}, "camel config: alpha=true: must be a number in [0, 1]"),
        ({"frequencies_mhz": []}, 'camel config: frequencies_mhz=[]: must be a non-empty list or "auto"'),
        ({"frequencies_mhz": [612, -1]}, "camel config: frequencies_mhz=[612, -1]: -1 is not valid"),
        ({"batch_sizes": [4, 8.5]},
         "camel config: batch_sizes=[4, 8.5]: 8.5 is not valid: entries must be positive integers"),
        ({"epoch_iterations": 0}, "camel config: epoch_iterations=0: must be an integer >= 1"),
        ({"metrics_port": 70000}, "camel config: metrics_port=70000: must be an integer port"),
        ({"seed": "x"}, 'camel config: seed="x": must be an integer'),
        ({"slo": {"metric": "ttft", "threshold_s": 0}}, "camel config: slo.threshold_s=0: must be a positive number"),
        ({"slo": {"metric": "tbt"}}, 'camel config: slo.metric="tbt": must be one of ttft, tpot, e2e'),
        ({"state_path": "/nonexistent-folder/s.json"},
         'camel config: state_path="/nonexistent-folder/s.json": folder /nonexistent-folder does not exist'),
    ],
)
def test_bad_values_name_key_and_value(section, expected):
    with pytest.raises(ConfigError) as err:
        CamelConfig.from_additional_config({"camel": section})
    assert one_line(err).startswith(expected), str(err.value)


def test_camel_section_must_be_a_mapping_or_path():
    with pytest.raises(ConfigError) as err:
        CamelConfig.from_additional_config({"camel": 3})
    assert one_line(err) == "camel config: camel=3: expected a mapping or the path of a YAML file"


def test_state_path_folder_is_a_file_or_unreadable(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        CamelConfig.from_mapping({"state_path": str(tmp_path)})
    if os.geteuid() != 0:  # root reads everything: the check cannot fail as root
        locked = tmp_path / "state.json"
        locked.write_text("{}")
        locked.chmod(0)
        with pytest.raises(ConfigError, match="exists but is not readable"):
            CamelConfig.from_mapping({"state_path": str(locked)})
    assert CamelConfig.from_mapping({"state_path": str(tmp_path / "new.json")}).state_path.endswith("new.json")


def test_yaml_file_with_inline_overrides(tmp_path):
    (tmp_path / "camel.yaml").write_text(
        "camel:\n  device: emulated\n  policy: grid\n  batch_sizes: [4, 8]\n  slo: {metric: ttft, threshold_s: 0.5}\n"
    )
    config = CamelConfig.from_mapping({"config_file": "camel.yaml", "policy": "static"}, base_dir=str(tmp_path))
    assert config.device == "emulated" and config.policy == "static" and config.batch_sizes == [4, 8]
    assert config.slo == SLOConfig(metric="ttft", threshold_s=0.5, quantile=0.9)
    path_only = CamelConfig.from_additional_config({"camel": str(tmp_path / "camel.yaml")})
    assert path_only.policy == "grid"


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: emulated\npolicy: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        CamelConfig.from_mapping({"config_file": str(bad)})
    assert one_line(err).startswith(f'camel config: config_file="{bad}": not valid YAML at line')
    with pytest.raises(ConfigError, match="cannot read"):
        CamelConfig.from_mapping({"config_file": str(tmp_path / "missing.yaml")})
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        CamelConfig.from_mapping({"config_file": str(tmp_path / "list.yaml")})


def test_replace_validates():
    config = CamelConfig()
    assert config.replace(metrics_port=9101).metrics_port == 9101
    with pytest.raises(ConfigError, match="alpha"):
        config.replace(alpha=2.0)


def test_batch_sizes_against_max_num_seqs():
    auto = CamelConfig()
    # auto ends at the engine's limit, so the default arm admits what stock vLLM admits (issue 15, item 10)
    assert resolve_batch_sizes(auto, EngineLimits(28)) == [4, 8, 12, 16, 20, 24, 28]
    assert resolve_batch_sizes(auto, EngineLimits(256)) == [37, 73, 110, 146, 183, 219, 256]
    assert resolve_batch_sizes(auto, EngineLimits(64)) == [9, 18, 27, 37, 46, 55, 64]
    assert resolve_batch_sizes(auto, EngineLimits(10)) == [4, 8, 10]
    listed = CamelConfig(batch_sizes=[16, 4, 4])
    assert resolve_batch_sizes(listed, EngineLimits(16)) == [4, 16]
    with pytest.raises(ConfigError) as err:
        resolve_batch_sizes(listed, EngineLimits(8))
    assert one_line(err) == "camel config: batch_sizes=[16, 4, 4]: 16 is above --max-num-seqs 8"


def test_batch_sizes_end_at_the_active_cap():
    """vLLM's --max-num-active-seqs (admission cap below --max-num-seqs) is the ceiling: no arm
    above it (it would admit exactly what the cap admits: a duplicate)."""
    auto = CamelConfig()
    assert resolve_batch_sizes(auto, EngineLimits(256, max_num_active_seqs=12)) == [4, 8, 12]
    assert resolve_batch_sizes(auto, EngineLimits(256, max_num_active_seqs=128)) == [18, 37, 55, 73, 91, 110, 128]
    assert resolve_batch_sizes(auto, EngineLimits(28, max_num_active_seqs=28)) == [4, 8, 12, 16, 20, 24, 28]
    assert EngineLimits(16, max_num_active_seqs=64).batch_ceiling == 16  # vLLM refuses this; never above max_num_seqs
    listed = CamelConfig(batch_sizes=[4, 16])
    assert resolve_batch_sizes(listed, EngineLimits(32, max_num_active_seqs=16)) == [4, 16]
    with pytest.raises(ConfigError) as err:
        resolve_batch_sizes(listed, EngineLimits(32, max_num_active_seqs=12))
    assert one_line(err) == "camel config: batch_sizes=[4, 16]: 16 is above --max-num-active-seqs 12"


def steps_device(writable: bool = True) -> FakeDevice:
    """A device offering the Orin's 930.75 MHz step among others (Hz, as devfreq lists)."""
    return FakeDevice((306000000.0, 612000000.0, 930750000.0), kind="steps", name="steps", energy_source="none",
                      energy_method="none", can_set_frequency=writable)


def test_frequencies_against_the_device():
    assert resolve_frequencies_hz(CamelConfig(), steps_device()) == [306e6, 612e6, 930.75e6]
    assert resolve_frequencies_hz(CamelConfig(frequencies_mhz=[930.75, 612]), steps_device()) == [930.75e6, 612e6]
    assert resolve_frequencies_hz(CamelConfig(frequencies_mhz=[612]), steps_device(writable=False)) == [None]
    assert resolve_frequencies_hz(CamelConfig(), NullDevice()) == [None]
    with pytest.raises(ConfigError) as err:
        resolve_frequencies_hz(CamelConfig(frequencies_mhz=[612, 700]), steps_device())
    assert one_line(err) == (
        "camel config: frequencies_mhz=[612, 700]: 700 MHz is not offered by device 'steps' "
        "(it offers 306, 612, 930.75)"
    )
    with pytest.raises(ConfigError, match="has no settable frequencies"):
        resolve_frequencies_hz(CamelConfig(frequencies_mhz=[612]), NullDevice())


def test_an_unknown_policy_is_named_with_every_declared_one():
    """The policy's name is its declaration's to check (core/ knows no policy names)."""
    from camel_vllm.policies.registry import validate_policy

    with pytest.raises(ConfigError) as err:
        validate_policy(CamelConfig.from_additional_config({"camel": {"policy": "best"}}))
    assert one_line(err) == ('camel config: policy="best": must be one of camel, camel-ts, ts, default, static, grid, '
                             "ucb, epsilon, zeus-ts, oracle, slo, voltana")


def test_an_unknown_device_is_named_with_every_declared_kind():
    """The device kind is its declaration's to check (core/ knows no device kinds)."""
    from camel_vllm.devices.registry import make_device

    with pytest.raises(ConfigError) as err:
        make_device(CamelConfig.from_additional_config({"camel": {"device": "tpu"}}))
    assert one_line(err) == 'camel config: device="tpu": must be one of auto, jetson, nvml, jtop, emulated, none'
