"""The one SLO filter (policies/slo/filter.py) and the one cost every policy ranks projections by."""

from __future__ import annotations

import numpy as np
import pytest

from camel_vllm.control.cost import LogEDPCost, SizeAdjustedLogEDPCost, WeightedCost
from camel_vllm.core.events import FinishedRequest
from camel_vllm.policies.slo.filter import slo_allowed


def test_arms_within_the_limit_and_arms_without_evidence_are_allowed() -> None:
    values = np.array([0.05, 0.2, np.nan, 0.1])
    assert slo_allowed(np.array([0, 1, 2, 3]), values, 0.1).tolist() == [0, 2, 3]
    assert slo_allowed(np.array([1, 3]), values, 0.1).tolist() == [3]


def test_when_no_arm_meets_the_limit_the_lowest_projections_stay_never_none() -> None:
    values = np.array([0.5, 0.3, 0.3, 0.9])
    assert slo_allowed(np.array([0, 1, 2, 3]), values, 0.1).tolist() == [1, 2]  # ties kept
    assert slo_allowed(np.array([3]), values, 0.1).tolist() == [3]


def test_edp_costs_rank_projections_by_mean_edp_and_weighted_by_the_controllers_references() -> None:
    energy, latency, edp = np.array([1.0, 2.0]), np.array([4.0, 1.0]), np.array([5.0, 2.5])
    for cost in (LogEDPCost(), SizeAdjustedLogEDPCost()):
        assert cost.projected(energy, latency, edp) is edp
    weighted = WeightedCost(alpha=0.5)
    # Before any request: the projections' medians as references.
    assert weighted.projected(energy, latency, edp) == pytest.approx([0.5 / 1.5 + 0.5 * 4.0 / 2.5,
                                                                      0.5 * 2.0 / 1.5 + 0.5 / 2.5])
    weighted(10.0, 2.0, FinishedRequest("r", 0.0, 2.0, 8, 8))  # references: 10 J, 2 s
    assert weighted.projected(energy, latency, edp) == pytest.approx([0.5 / 10 + 0.5 * 4.0 / 2, 0.5 * 2 / 10 + 0.5 / 2])
