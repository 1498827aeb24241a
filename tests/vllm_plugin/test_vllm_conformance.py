"""vLLM 0.32.0's own scheduler tests as a conformance suite for ``CamelScheduler``.

``tests/v1/core/test_scheduler.py`` and the helpers it imports are fetched from the vLLM 0.32.0
source distribution on the package registry (pip, pinned sha256; :mod:`camel_vllm.testing.vllm_conformance`)
and run three times side by side, one pytest process each, under a timeout: stock; camel
substituted with ``policy: default`` (must match stock test for test); camel with a static
small cap (only :data:`SMALL_CAP_DIFFERENCES` may differ, and they must). Without the registry
the fetch fails with one line: CI has registry access, so a skip would hide a broken check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from camel_vllm.testing.vllm_conformance import (
    DESELECTED,
    SMALL_CAP,
    FetchError,
    RunError,
    RunResult,
    differences,
    fetch_suite,
    run_arms,
)

SUITE = "tests/v1/core/test_scheduler.py::"
#: Tests that run offline in vLLM 0.32.0's test_scheduler.py (208 collected, 47 deselected).
EXPECTED_TESTS = 161
#: Tests whose outcome differs under the small cap (4): each asserts that every request it
#: adds is admitted in one step, more than the cap lets in.
SMALL_CAP_DIFFERENCES: dict[str, str] = {
    SUITE + "test_schedule[False-None]": "asserts all 10 requests are scheduled as new in the first step",
    SUITE + "test_schedule[True-5]": "asserts all 10 requests are scheduled as new in the first step",
    SUITE + "test_schedule_skip_tokenizer_init": "asserts all 5 requests are scheduled as new in the first step",
    SUITE + "test_scheduler_reset_prefix_cache": "asserts all 10 requests are running after the first step",
}


def _fetch_and_run(work_dir: Path) -> dict[str, RunResult] | str:
    """The three runs' results, or the one-line reason they could not be had."""
    try:
        return run_arms(fetch_suite(), ("stock", "default", "small-cap"), work_dir=work_dir)
    except (FetchError, RunError) as err:
        return str(err)


def test_vllm_scheduler_tests_give_stock_results_with_camel_substituted(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    results = _fetch_and_run(tmp_path)
    if isinstance(results, str):  # failed outside the handler: one line, no chained traceback
        pytest.fail(results, pytrace=False)
    stock, default, small = results["stock"], results["default"], results["small-cap"]
    with capsys.disabled():
        print(f"\nvLLM {SUITE[:-2]}: stock {stock.summary()}; camel default {default.summary()}; "
              f"camel cap {SMALL_CAP} {small.summary()}")

    # The baseline: every test that can run offline passes on vLLM's own scheduler, and the
    # deselection list names only tests that exist.
    assert len(stock.outcomes) == EXPECTED_TESTS, stock.log_tail
    assert stock.counts["passed"] == EXPECTED_TESTS, {t: o for t, o in stock.outcomes.items() if o != "passed"}
    deselected_names = {test_id.split("::")[1].split("[")[0] for test_id in stock.deselected}
    assert deselected_names == set(DESELECTED)
    # camel's scheduler was really built in the camel runs, and never in the stock one.
    assert stock.camel_schedulers_built == 0
    assert default.camel_schedulers_built >= EXPECTED_TESTS // 2
    assert small.camel_schedulers_built == default.camel_schedulers_built

    assert differences(stock, default) == {}
    small_diff = differences(stock, small)
    assert set(small_diff) == set(SMALL_CAP_DIFFERENCES), small_diff
    assert all(outcomes == ("passed", "failed") for outcomes in small_diff.values()), small_diff
