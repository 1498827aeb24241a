"""One workload estimate: the controller feeds it, the policy reads it (policies/workload.py)."""

from __future__ import annotations

from camel_vllm.policies.decision import DecisionInput
from camel_vllm.policies.workload import WorkloadEstimator
from tests.telemetry.test_metrics_helpers import drive, make_rig


def test_the_controller_feeds_the_policys_estimate_and_hands_it_in_every_decision() -> None:
    rig = make_rig(policy="camel")
    controller, policy = rig.controller, rig.controller.policy
    assert controller.workload is policy.workload
    seen: list[WorkloadEstimator | None] = []
    select = policy.select

    def tracked(decision: DecisionInput) -> int:
        seen.append(decision.workload)
        return select(decision)

    policy.select = tracked  # type: ignore[method-assign]
    drive(rig, 6, prompt_tokens=40, output_tokens=5)
    assert policy.workload.arrivals == 6 and policy.workload.finished == 6
    assert seen and all(w is policy.workload for w in seen)
    # The policy's own hooks do not feed it: only the controller does (no double counting).
    policy.observe_arrival(99.0, 40)
    assert policy.workload.arrivals == 6
    controller.close()


def test_a_policy_that_reads_no_estimate_gets_none_and_pays_for_none() -> None:
    rig = make_rig(policy="default")
    seen: list[WorkloadEstimator | None] = []
    select = rig.controller.policy.select

    def tracked(decision: DecisionInput) -> int:
        seen.append(decision.workload)
        return select(decision)

    rig.controller.policy.select = tracked  # type: ignore[method-assign]
    drive(rig, 3)
    assert rig.controller.workload is None and seen and all(w is None for w in seen)
    rig.controller.close()
