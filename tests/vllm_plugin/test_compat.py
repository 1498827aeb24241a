"""camel_vllm/vllm_plugin/compat.py: the supported vLLM range, and vLLM modules that moved."""

from __future__ import annotations

import sys
import types

import pytest

from camel_vllm.vllm_plugin import compat
from camel_vllm.vllm_plugin.serve import vllm_version


def test_installed_vllm_is_supported():
    version = vllm_version()
    assert version is not None and compat.is_supported(version)
    assert compat.unsupported_warning(version) is None


def test_supported_range():
    assert compat.SUPPORTED_VLLM == ">=0.32,<0.34"
    for inside in ("0.32.0", "0.32.0+cpu", "0.32.4", "0.33.0", "0.33.1rc1"):
        assert compat.is_supported(inside), inside
    for outside in ("0.31.9", "0.34.0", "0.34.0rc1", "1.0.0"):
        assert not compat.is_supported(outside), outside
    assert compat.unsupported_warning(None) is None
    assert compat.unsupported_warning("0.34.0") == (
        "camel: vLLM 0.34.0 is outside the range camel-vllm is tested with (vllm>=0.32,<0.34); "
        "the scheduler adapter and the --scheduler flag rely on vLLM internals that may have changed")


def test_cli_args_is_found_in_the_installed_vllm():
    module = compat.cli_args_module()
    assert module.__name__ in compat.CLI_ARGS_MODULES
    assert callable(module.make_arg_parser)


def test_cli_args_is_found_in_either_place(monkeypatch):
    """0.33's entrypoints/common first, 0.32's entrypoints/launchers otherwise."""
    common, launchers = compat.CLI_ARGS_MODULES
    new, old = types.ModuleType(common), types.ModuleType(launchers)
    monkeypatch.setitem(sys.modules, common, new)
    monkeypatch.setitem(sys.modules, launchers, old)
    assert compat.cli_args_module() is new
    monkeypatch.setitem(sys.modules, common, None)  # a vLLM without it: import fails as if missing
    assert compat.cli_args_module() is old
    monkeypatch.setitem(sys.modules, launchers, None)
    with pytest.raises(ModuleNotFoundError, match="none of vllm.entrypoints.common.cli_args, "
                                                  "vllm.entrypoints.launchers.cli_args can be imported"):
        compat.cli_args_module()


def test_a_module_that_fails_inside_is_not_skipped(tmp_path, monkeypatch):
    """Only a missing module moves on: a broken one reports its own missing import."""
    (tmp_path / "camel_broken_cli_args.py").write_text("import camel_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as err:
        compat.import_first(("camel_broken_cli_args", "json"))
    assert err.value.name == "camel_no_such_dependency"
    assert compat.import_first(("camel_no_such_module", "json")).__name__ == "json"
