"""Bad camel configuration values: one line naming key and value, before any engine starts.

Pure values are refused by :class:`CamelConfig` (wrong type, NaN, infinity, negative, empty,
a FIFO where a file belongs); what needs the policy, the device or the network (``policy:
slo`` without its section, ``policy: oracle``, ``policy_params``, a metrics port in use, a
metrics host that is not this machine's) is refused by the plugin's hook on vLLM's real
``vllm serve`` parser, so ``vllm serve`` prints that line and exits 2 instead of starting an
engine core that fails with vLLM's traceback. No engine is started here.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

import camel_vllm
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.wiring.build import EngineLimits, build_controller

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("section, line", [
    ({"rails": 5}, 'camel config: rails=5: must be a rail name, a comma list of names, or "all"'),
    ({"rails": ""}, 'camel config: rails="": must be a rail name, a comma list of names, or "all"'),
    ({"rails": ["VDD_GPU_SOC"]},
     'camel config: rails=["VDD_GPU_SOC"]: must be a rail name, a comma list of names, or "all"'),
    ({"switch_cost": NAN}, "camel config: switch_cost=NaN: must be a finite number >= 0"),
    ({"switch_cost": INF}, "camel config: switch_cost=Infinity: must be a finite number >= 0"),
    ({"epoch_s": NAN}, "camel config: epoch_s=NaN: must be a finite number >= 0"),
    ({"epoch_s": -1}, "camel config: epoch_s=-1: must be a finite number >= 0"),
    ({"sample_hz": NAN}, "camel config: sample_hz=NaN: must be a finite number >= 0"),
    ({"sample_hz": INF}, "camel config: sample_hz=Infinity: must be a finite number >= 0"),
    ({"frequencies_mhz": [612, NAN]},
     "camel config: frequencies_mhz=[612, NaN]: NaN is not valid: entries must be positive numbers"),
    ({"seed": -1}, "camel config: seed=-1: must be an integer >= 0"),
    ({"metrics_host": ""}, 'camel config: metrics_host="": must be a non-empty string'),
    ({"metrics_host": 5}, "camel config: metrics_host=5: must be a non-empty string"),
    ({"device_profile": None}, "camel config: device_profile=null: must be a non-empty string"),
    ({"sysfs_root": "/no/such/folder"}, 'camel config: sysfs_root="/no/such/folder": is not a folder'),
    ({"slo": {"threshold_s": NAN}}, "camel config: slo.threshold_s=NaN: must be a positive number of seconds"),
])
def test_bad_value_is_one_line_naming_the_key(section, line):
    with pytest.raises(ConfigError) as err:
        CamelConfig.from_mapping(section)
    assert str(err.value) == line


def test_fifo_state_path_and_request_log_are_refused_at_start(tmp_path):
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    for key in ("state_path", "request_log"):
        with pytest.raises(ConfigError) as err:
            CamelConfig.from_mapping({key: str(fifo)})
        assert str(err.value) == f'camel config: {key}="{fifo}": is not a regular file (a FIFO, socket or device)'


def test_config_file_that_is_binary_a_folder_or_a_fifo_names_the_file(tmp_path):
    binary = tmp_path / "camel.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    cases = {
        str(binary): "not a UTF-8 text file (byte at offset 0)",
        str(tmp_path): "is a folder, not a file",
        str(fifo): "is not a regular file (a FIFO, socket or device)",  # reading it would block forever
    }
    for path, reason in cases.items():
        with pytest.raises(ConfigError) as err:
            CamelConfig.from_additional_config({"camel": path})
        assert str(err.value) == f'camel config: config_file="{path}": {reason}'


def test_rails_on_a_jetson_tree_and_slo_inner_of_wrong_type(tmp_path):
    from camel_vllm.testing.fake_sysfs import build_fake_orin_tree

    build_fake_orin_tree(tmp_path, 6)
    with pytest.raises(ConfigError) as err:  # used to be an AttributeError in select_rails
        CamelConfig.from_mapping({"device": "jetson", "sysfs_root": str(tmp_path), "rails": 5})
    assert err.value.key == "rails"
    config = CamelConfig.from_mapping({"device": "emulated", "policy": "slo", "slo": {},
                                       "policy_params": {"inner": ["camel"]}})
    with pytest.raises(ConfigError) as err:  # used to be a TypeError (unhashable list)
        build_controller(config, EngineLimits(8), with_metrics=False)
    assert str(err.value).startswith('camel config: policy_params.inner=["camel"]: must be one of ')


def test_profile_file_with_nan_is_refused(tmp_path):
    from camel_vllm.devices.emulator.profiles import load_model_profile

    shipped = Path(camel_vllm.__file__).parent / "data" / "profiles" / "llama-3.2-1b.yaml"
    bad = tmp_path / "model.yaml"
    bad.write_text(shipped.read_text().replace("params: 1.2358e9", "params: .nan"))
    with pytest.raises(ConfigError) as err:
        load_model_profile(str(bad))
    assert str(err.value) == f'camel config: model_profile="{bad}": field params=nan must be a positive number'


# --------------------------------------------------------------- at vllm serve's parser
#: The tests here share a module-scoped fixture: one xdist worker runs them all (scripts/test.sh
#: distributes with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_config_bad_values")


@pytest.fixture(scope="module")
def parser():
    camel_vllm.register()
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from camel_vllm.vllm_plugin.compat import cli_args_module

    return cli_args_module().make_arg_parser(FlexibleArgumentParser())


def _parse_fails(parser, capsys, section, *extra) -> str:
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--model", "m", "--scheduler", "camel", *extra,
                           "--additional-config", json.dumps({"camel": section})])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_policy_errors_stop_vllm_serve_while_parsing(parser, capsys):
    base = {"device": "emulated"}
    assert _parse_fails(parser, capsys, {**base, "policy": "slo"}) == (
        "camel config: slo=null: policy slo needs an slo section (metric, threshold_s, quantile)")
    assert _parse_fails(parser, capsys, {**base, "policy": "oracle"}) == (
        'camel config: policy="oracle": oracle needs the true mean costs (simulation only)')
    assert _parse_fails(parser, capsys, {**base, "policy": "epsilon", "policy_params": {"epsilon": 2}}) == (
        "camel config: policy_params.epsilon=2.0: must be in [0, 1]")
    assert _parse_fails(parser, capsys, {**base, "policy": "camel-ts", "policy_params": {"prior_kappa": -1}}) == (
        "camel config: policy_params.prior_kappa=-1: must be > 0")
    assert _parse_fails(parser, capsys, {**base, "policy_params": {"prior_kappa": 1}}) == (
        "camel config: policy_params.prior_kappa=1: not a parameter of policy camel "
        "(known: board_prior, prefill_clock, probe, warmup_iterations, warmup_requests)")
    assert _parse_fails(parser, capsys, {**base, "policy_params": {"warmup_iterations": -1}}) == (
        "camel config: policy_params.warmup_iterations=-1: must be an integer >= 0")
    assert _parse_fails(parser, capsys, {**base, "policy_params": {"board_prior": "x"}}) == (
        'camel config: policy_params.board_prior="x": must be "none" or "profile"')
    assert _parse_fails(parser, capsys, {**base, "policy": "ucb", "policy_params": {"nope": 1}}) == (
        "camel config: policy_params.nope=1: not a parameter of policy ucb (known: c)")
    assert _parse_fails(parser, capsys, {**base, "policy": "static", "policy_params": {"arm": [612, 12]}},
                        "--max-num-seqs", "8").startswith(
        "camel config: policy_params.arm=[612, 12]: not in the arm set (arms: 306/4, 306/8, ")
    # without --max-num-seqs the cap waits for the value vLLM resolves, but the frequency is checked now
    assert _parse_fails(parser, capsys, {**base, "policy": "static", "policy_params": {"arm": ["auto", 4]}}).startswith(
        'camel config: policy_params.arm=["auto", 4]: not in the arm set (arms: 306/4, ')
    # good ones still parse
    args = parser.parse_args(["--model", "m", "--scheduler", "camel", "--additional-config",
                              json.dumps({"camel": {**base, "policy": "slo", "slo": {"threshold_s": 5}}})])
    assert args.scheduler_cls == "camel_vllm.CamelScheduler"


def test_metrics_port_in_use_or_host_not_here_stops_vllm_serve_while_parsing(parser, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert _parse_fails(parser, capsys, {"device": "none", "metrics_port": port}) == (
            f"camel config: metrics_port={port}: port already in use on 127.0.0.1 "
            "(choose another metrics_port, or 0 for any free port)")
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine
    assert _parse_fails(parser, capsys, {"device": "none", "metrics_port": 0, "metrics_host": "192.0.2.1"}) == (
        'camel config: metrics_host="192.0.2.1": cannot serve metrics on 192.0.2.1:0: Cannot assign requested address')
    assert _parse_fails(parser, capsys, {"device": "none", "metrics_port": 8123}, "--port", "8123") == (
        "camel config: metrics_port=8123: 8123 is vLLM's own --port "
        "(choose another metrics_port, or 0 for any free port)")
    # a free port parses, and is free again afterwards (the check releases it)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    parser.parse_args(["--model", "m", "--scheduler", "camel", "--additional-config",
                       json.dumps({"camel": {"device": "none", "metrics_port": free}})])
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", free))


def test_fifo_state_path_stops_vllm_serve_while_parsing(parser, capsys, tmp_path):
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    assert _parse_fails(parser, capsys, {"device": "none", "state_path": str(fifo)}) == (
        f'camel config: state_path="{fifo}": is not a regular file (a FIFO, socket or device)')
