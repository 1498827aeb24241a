"""camel_vllm/cli/deprecated.py: an old option name stores like the new one and says so once on stderr."""

from __future__ import annotations

import argparse

import pytest

from camel_vllm.cli.deprecated import add_deprecated_alias


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camel-vllm bench x")
    parser.add_argument("--device-profile", default="orin", help="profile")
    add_deprecated_alias(parser, "--device", "--device-profile")
    parser.add_argument("--batch", type=int, choices=(4, 8), default=None)
    add_deprecated_alias(parser, "--cap", "--batch")
    parser.add_argument("--board", action="append", default=None)
    add_deprecated_alias(parser, "--boards", "--board")
    return parser


def test_the_old_name_stores_into_the_new_ones_destination_with_one_notice(capsys):
    args = _parser().parse_args(["--device", "agx"])
    assert args.device_profile == "agx"
    assert capsys.readouterr().err == "camel-vllm bench x: --device is deprecated, use --device-profile\n"


def test_the_new_name_says_nothing_and_defaults_stay(capsys):
    args = _parser().parse_args(["--device-profile", "agx"])
    assert args.device_profile == "agx" and args.batch is None and args.board is None
    args = _parser().parse_args([])
    assert args.device_profile == "orin"  # the alias never overwrites the default
    assert capsys.readouterr().err == ""


def test_the_alias_converts_and_checks_like_the_new_option(capsys):
    assert _parser().parse_args(["--cap", "8"]).batch == 8
    with pytest.raises(SystemExit):
        _parser().parse_args(["--cap", "5"])
    assert "invalid choice: 5" in capsys.readouterr().err


def test_a_repeatable_option_stays_repeatable_under_both_names_with_one_notice(capsys):
    args = _parser().parse_args(["--board", "a", "--boards", "b", "--boards", "c"])
    assert args.board == ["a", "b", "c"]
    assert capsys.readouterr().err.splitlines() == ["camel-vllm bench x: --boards is deprecated, use --board"]


def test_the_alias_is_not_in_help_and_a_missing_target_is_an_error():
    text = _parser().format_help()
    assert "--device-profile" in text and "--device " not in text and "--cap" not in text
    with pytest.raises(ValueError, match="--nope is not an option"):
        add_deprecated_alias(argparse.ArgumentParser(), "--old", "--nope")
