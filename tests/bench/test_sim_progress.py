"""``bench sim``'s progress moves while a policy runs: per simulated request, from worker processes too.

It used to advance once per finished run (and, in the pool, only when every run had ended), so a
1,000-request run sat at 0 % for its whole length.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from camel_vllm.bench.pool import pool_results, report_progress
from camel_vllm.bench.sim import PolicySpec, SimSetup, arm_set, run_many, run_static_sweep, static_specs
from camel_vllm.core.config import CamelConfig
from camel_vllm.traces import alpaca_like

CLI = "import sys; from camel_vllm.cli import main; sys.exit(main())"


def _report_slowly(task: tuple[int, float]) -> int:
    n, pause_s = task
    for _ in range(n):
        time.sleep(pause_s)
        report_progress(1)
    return n


def test_pool_workers_report_progress_while_their_tasks_run():
    calls: list[tuple[float, int]] = []
    ends: list[float] = []
    for _ in pool_results(_report_slowly, [(8, 0.1), (8, 0.1)], ["a", "b"], workers=2,
                          progress=lambda n: calls.append((time.monotonic(), n))):
        ends.append(time.monotonic())
    assert sum(n for _, n in calls) == 16
    assert any(t < min(ends) for t, _ in calls)  # progress arrived before any task had ended


def test_report_progress_outside_a_pool_does_nothing():
    report_progress(5)  # no pool, no local run: nowhere to report, no error


def _setup() -> SimSetup:
    return SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b")


def test_run_many_in_this_process_reports_every_request():
    trace = alpaca_like(60, rate_per_s=2.0, seed=1)
    calls: list[int] = []
    run_many(_setup(), [PolicySpec("default", "default"), PolicySpec("camel", "camel")], trace, workers=1,
             progress=calls.append)
    assert calls == [1] * (2 * len(trace))


def test_run_many_in_workers_reports_during_the_runs_and_adds_up(monkeypatch):
    from camel_vllm.bench import pool

    monkeypatch.setattr(pool, "PROGRESS_POLL_S", 0.005)  # read often, so no run ends between two reads
    trace = alpaca_like(300, rate_per_s=2.0, seed=1)
    calls: list[int] = []
    run_many(_setup(), [PolicySpec("default", "default"), PolicySpec("camel", "camel")], trace, workers=2,
             progress=calls.append)
    assert sum(calls) == 2 * len(trace)
    assert len(calls) > 2 and max(calls) < 2 * len(trace)  # not one lump per run


def test_a_static_sweep_counts_reused_runs_too():
    base = CamelConfig(frequencies_mhz=[306, 930.75], batch_sizes=[4, 8, 28])
    setup = SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b", base=base)
    specs = static_specs(arm_set(setup))
    trace = alpaca_like(40, rate_per_s=0.5, seed=2)  # light load: the large caps are reused
    calls: list[int] = []
    run_static_sweep(setup, specs, trace, workers=2, progress=calls.append)
    assert sum(calls) == len(specs) * len(trace)


def test_the_progress_bar_moves_during_a_run(tmp_path: Path):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": i * 0.5, "input_length": 200, "output_length": 100})
                             + "\n" for i in range(1000)))
    done = subprocess.run([sys.executable, "-c", CLI, "bench", "sim", "--trace", str(trace), "--policies", "camel",
                           "--workers", "1", "--json", str(tmp_path / "o.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = [int(p) for p in re.findall(r"simulating:\s+(\d+)%", done.stderr)]
    assert shown[-1] == 100
    assert any(0 < p < 100 for p in shown), shown  # one run of one policy, yet the bar moved in between
