"""pytest plugin for the fetched vLLM scheduler tests: camel's scheduler in place of vLLM's.

Loaded with ``-p camel_vllm.testing.conformance_plugin`` (see :mod:`.vllm_conformance`).
``--camel-arm``:

- ``stock``: nothing substituted (vLLM's baseline);
- ``default`` / ``small-cap``: wherever the fetched test modules name vLLM's ``Scheduler`` or
  ``AsyncScheduler`` (``create_scheduler`` in ``tests/v1/core/utils.py`` and the tests' own
  ``Scheduler(...)`` calls), they get camel's counterpart, built with the same arguments; its
  ``vllm_config.additional_config["camel"]`` selects the arm (``device: none``, so no clock is
  touched). A sync ``Scheduler`` stays sync (``CamelScheduler``'s own sync/async switch is
  bypassed, as stock ``Scheduler(...)`` never switches); ``AsyncScheduler`` becomes
  ``CamelAsyncScheduler``. vLLM's other schedulers (diffusion) have no camel counterpart and
  stay stock.

Also deselects :data:`~.vllm_conformance.DESELECTED` by function name and writes every test's
outcome, the deselected ids and the number of camel schedulers built to ``--camel-outcomes``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler

from camel_vllm.testing.vllm_conformance import ARMS, DESELECTED, SMALL_CAP
from camel_vllm.vllm_plugin.scheduler import CamelAsyncScheduler, CamelScheduler

#: Fetched modules whose ``Scheduler`` / ``AsyncScheduler`` names are substituted.
SUBSTITUTED_MODULES = (
    "tests.v1.core.utils",
    "tests.v1.core.test_scheduler",
    "tests.v1.kv_connector.unit.utils",
    "tests.v1.core.test_prefix_caching",
)
#: Precedence when a test reports several phases (setup, call, teardown).
_RANK = {"passed": 0, "skipped": 1, "xpassed": 1, "xfailed": 1, "failed": 2, "error": 3}

# Per-process state (one pytest session per process).
_arm = "stock"
_built = 0
_outcomes: dict[str, str] = {}
_deselected: list[str] = []


def camel_section(vllm_config: Any) -> dict[str, Any]:
    """The ``"camel"`` entry of ``additional_config`` for the arm under test."""
    if _arm == "default":
        return {"device": "none", "policy": "default"}
    scheduler_config = vllm_config.scheduler_config
    active = getattr(scheduler_config, "max_num_active_seqs", None)  # vLLM's admission cap, when set
    # Arms above the admission cap are refused at start-up (issue 23): clip to it as well.
    cap = min(SMALL_CAP, int(scheduler_config.max_num_seqs), int(active) if active is not None else SMALL_CAP)
    return {"device": "none", "policy": "static", "policy_params": {"arm": ["auto", cap]}}


class _Substitute:
    """Sets the arm's camel config on the test's ``vllm_config``, then builds camel's scheduler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        global _built
        vllm_config = kwargs["vllm_config"] if "vllm_config" in kwargs else args[0]
        if not isinstance(vllm_config.additional_config, dict):
            raise TypeError(f"additional_config is {type(vllm_config.additional_config).__name__}, not a dict")
        vllm_config.additional_config["camel"] = camel_section(vllm_config)
        _built += 1
        super().__init__(*args, **kwargs)


class ConformanceScheduler(_Substitute, CamelScheduler):
    """Camel's counterpart of vLLM's ``Scheduler``."""


class ConformanceAsyncScheduler(_Substitute, CamelAsyncScheduler):
    """Camel's counterpart of vLLM's ``AsyncScheduler``."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("camel-vllm conformance")
    group.addoption("--camel-arm", choices=ARMS, default="stock", help="which scheduler the tests build")
    group.addoption("--camel-outcomes", default=None, help="write each test's outcome here (JSON)")


def pytest_configure(config: pytest.Config) -> None:
    global _arm
    _arm = config.getoption("--camel-arm")
    # vLLM's own markers (registered by its tests/conftest.py and pyproject, not fetched).
    config.addinivalue_line("markers", "cpu_test: vLLM marker")
    config.addinivalue_line("markers", "skip_global_cleanup: vLLM marker")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        name = getattr(item, "originalname", None) or item.name
        (dropped if name in DESELECTED else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    _deselected.extend(item.nodeid for item in dropped)


@pytest.fixture(autouse=True)
def _camel_scheduler_substituted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Camel's classes under vLLM's names in the fetched modules, for this test."""
    if _arm != "stock":
        for module_name in SUBSTITUTED_MODULES:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            if getattr(module, "Scheduler", None) is Scheduler:
                monkeypatch.setattr(module, "Scheduler", ConformanceScheduler)
            if getattr(module, "AsyncScheduler", None) is AsyncScheduler:
                monkeypatch.setattr(module, "AsyncScheduler", ConformanceAsyncScheduler)
    yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        else:
            outcome = report.outcome
    elif report.failed:
        outcome = "error"
    elif report.skipped:
        outcome = "skipped"
    else:
        outcome = "passed"
    previous = _outcomes.get(report.nodeid)
    if previous is None or _RANK[outcome] > _RANK[previous]:
        _outcomes[report.nodeid] = outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--camel-outcomes")
    if not path:
        return
    data = {
        "arm": _arm,
        "outcomes": _outcomes,
        "deselected": _deselected,
        "camel_schedulers_built": _built,
    }
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
