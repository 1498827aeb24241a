"""The policy's beliefs reach the metrics as copies made on the engine thread (control/snapshots.py)."""

from __future__ import annotations

import threading

from camel_vllm.core.config import CamelConfig
from camel_vllm.telemetry.metrics import MetricsExporter
from tests.telemetry.test_metrics_helpers import drive, fetch, make_rig, samples


def test_a_scrape_never_calls_the_policy_and_shows_the_beliefs_of_the_engines_next_step() -> None:
    rig = make_rig(policy="camel-ts")
    policy = rig.controller.policy
    threads: list[str] = []
    estimates = policy.estimates

    def tracked():
        threads.append(threading.current_thread().name)
        return estimates()

    policy.estimates = tracked  # type: ignore[method-assign]
    exporter = MetricsExporter.start(CamelConfig(metrics_port=0), rig.controller)
    rig.controller.listeners.append(exporter)
    try:
        drive(rig, 6)  # ends drained: the engine copies the policy as it drains
        first = samples(fetch(exporter.url))["camel_arm_cost_mean"]
        assert {(s.labels["freq_mhz"], s.labels["max_batch"], s.labels["context"]): s.value for s in first} == {
            (*_labels(rig, e.arm_index), "all" if e.context_id is None else str(e.context_id)): e.mean
            for e in estimates()}
        copies = len(threads)
        # More evidence after that scrape: not shown until the engine's next step copies it.
        for arm in range(len(rig.controller.arms)):
            policy.observe(arm, rig.controller.current_context, 100.0)
        stale = samples(fetch(exporter.url))["camel_arm_cost_mean"]
        assert [s.value for s in stale] == [s.value for s in first] and len(threads) == copies
        drive(rig, 1)
        fresh = samples(fetch(exporter.url))["camel_arm_cost_mean"]
        assert [s.value for s in fresh] != [s.value for s in first]
    finally:
        rig.controller.close()
    assert threads and set(threads) == {threading.main_thread().name}  # the engine's thread, never the HTTP one


def _labels(rig, arm_index: int) -> tuple[str, str]:
    from camel_vllm.telemetry.metrics.readout import arm_labels

    return arm_labels(rig.controller.arms[arm_index])
