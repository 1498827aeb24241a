"""The scheduler adapter and the plugin against vLLM's source, read without importing it.

The installed vLLM (0.32.0 in CI) is read from its site-packages folder; vLLM 0.33.0, which
has no CPU build to install, from data/vllm-0.33.0-surface.json: the summary of the
``vllm-0.33.0.tar.gz`` sdist made by :mod:`camel_vllm.testing.vllm_surface` (sha256 and commands
in docs/vllm-integration.md, "Supported vLLM versions"), checked against the source itself,
fetched once and sha256-pinned (:mod:`camel_vllm.testing.vllm_source`; ``CAMEL_VLLM_033_SRC`` names
an unpacked ``vllm/`` folder to use instead).
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path

import pytest

import vllm
from camel_vllm.testing.vllm_surface import extract, problems
from camel_vllm.vllm_plugin.compat import CLI_ARGS_MODULES, base_version, is_supported
from camel_vllm.vllm_plugin.serve import vllm_version

SNAPSHOT_033 = Path(__file__).parent / "data" / "vllm-0.33.0-surface.json"


def _adapter_overrides() -> dict[str, list[str]]:
    """The vLLM scheduler methods the adapter overrides, with its own parameter names."""
    from camel_vllm.vllm_plugin.scheduler import _CamelMixin

    overrides: dict[str, list[str]] = {}
    for name, value in vars(_CamelMixin).items():
        if inspect.isfunction(value) and not name.startswith("_camel") and name != "__init__":
            params = inspect.signature(value).parameters.values()
            overrides[name] = [("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name
                               for p in params]
    return overrides


#: The tests here share a module-scoped fixture: one xdist worker runs them all (scripts/test.sh
#: distributes with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_vllm_surface")


@pytest.fixture(scope="module")
def installed() -> dict:
    return extract(Path(vllm.__file__).resolve().parent)


def test_adapter_overrides_are_read_from_the_code():
    overrides = _adapter_overrides()
    assert set(overrides) == {"add_request", "schedule", "update_from_output", "finish_requests", "shutdown"}
    assert overrides["update_from_output"] == ["self", "scheduler_output", "model_runner_output"]


def test_installed_vllm_has_what_the_adapter_needs(installed):
    assert installed["vllm_version"] == base_version(vllm_version() or "")
    assert problems(installed, _adapter_overrides(), CLI_ARGS_MODULES) == []


def test_problems_are_found(installed):
    """Each kind of break the check is there for is reported (the check can fail)."""
    broken = copy.deepcopy(installed)
    classes = broken["classes"]
    classes["SchedulerInterface"]["methods"]["drain"] = {"params": ["self"], "decorators": ["abstractmethod"]}
    classes["Scheduler"]["methods"]["update_from_output"]["params"].append("extra")
    classes["Scheduler"]["init_attrs"].remove("max_num_active_reqs")
    classes["SchedulerConfig"]["fields"].remove("max_num_active_seqs")
    broken["scheduler_built_with"].append("new_kwarg")
    broken["functions"]["make_arg_parser"]["file"] = "entrypoints/elsewhere/cli_args.py"
    found = problems(broken, _adapter_overrides(), CLI_ARGS_MODULES)
    assert found == [
        "SchedulerInterface.drain is abstract and Scheduler does not define it",
        "EngineCore builds the scheduler with new_kwarg=, which Scheduler.__init__ does not take",
        "Scheduler.update_from_output('self', 'scheduler_output', 'model_runner_output', 'extra') != the adapter's "
        "('self', 'scheduler_output', 'model_runner_output')",
        "Scheduler.max_num_active_reqs is not set in __init__ nor defined",
        "SchedulerConfig.max_num_active_seqs is not a field",
        "make_arg_parser is in vllm.entrypoints.elsewhere.cli_args, where camel does not look",
    ]
    del classes["AsyncScheduler"]
    assert problems(broken, {}, CLI_ARGS_MODULES) == [
        "class AsyncScheduler not found in vllm/v1/core/sched/async_scheduler.py"]


def test_vllm_033_has_what_the_adapter_needs(installed):
    summary = json.loads(SNAPSHOT_033.read_text(encoding="utf-8"))
    assert summary["vllm_version"] == "0.33.0" and is_supported(summary["vllm_version"])
    # Made by today's extractor: the same layout as the installed vLLM's summary.
    assert summary.keys() == installed.keys()
    assert all(summary["classes"][c].keys() == installed["classes"][c].keys() for c in installed["classes"])
    assert problems(summary, _adapter_overrides(), CLI_ARGS_MODULES) == []
    # What changed for camel (issue 23): has_request is new and abstract, and Scheduler defines it;
    # make_arg_parser moved to entrypoints/common.
    interface = summary["classes"]["SchedulerInterface"]["methods"]
    assert "abstractmethod" in interface["has_request"]["decorators"]
    assert "has_request" in summary["classes"]["Scheduler"]["methods"]
    assert summary["functions"]["make_arg_parser"]["file"] == "entrypoints/common/cli_args.py"


def test_snapshot_is_the_033_source(vllm_033_src: Path) -> None:
    summary = extract(vllm_033_src)
    assert summary == json.loads(SNAPSHOT_033.read_text(encoding="utf-8"))
