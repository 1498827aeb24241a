"""camel_vllm.bench.paired: per-request EDP differences and their batch-means standard error."""

from __future__ import annotations

import random

import pytest

from camel_vllm.bench.paired import paired_edp_difference
from camel_vllm.sim.records import RequestRecord


def _records(edps_js, *, ok=None):
    """Request i arrives at i s, takes 1 s, so its EDP equals its energy."""
    return [RequestRecord(request_id=f"r{i}", arrival_s=float(i), finish_s=i + 1.0, ttft_s=None, energy_j=e,
                          ok=True if ok is None else ok[i]) for i, e in enumerate(edps_js)]


def test_same_records_differ_by_nothing():
    base = _records([3.0, 5.0, 7.0, 9.0])
    paired = paired_edp_difference(base, base, "default")
    assert (paired.diff_pct, paired.stderr_pct, paired.requests) == (0.0, 0.0, 4)


def test_constant_saving_has_no_error():
    paired = paired_edp_difference(_records([8.0] * 40), _records([10.0] * 40), "default")
    assert paired.diff_pct == pytest.approx(-20.0) and paired.stderr_pct == pytest.approx(0.0)
    assert paired.batches == 20


def test_batch_means_standard_error():
    # Differences 1, 1 | 3, 3 in two batches: batch means 1 and 3, sd sqrt(2), error sqrt(2)/sqrt(2) = 1,
    # i.e. 10% of the baseline's mean 10; the mean difference 2 is 20%.
    paired = paired_edp_difference(_records([11.0, 11.0, 13.0, 13.0]), _records([10.0] * 4), "default", batches=2)
    assert paired.diff_pct == pytest.approx(20.0) and paired.stderr_pct == pytest.approx(10.0)


def test_pairs_by_request_id_in_arrival_order_and_skips_unfinished():
    base = _records([10.0, 10.0, 10.0, 10.0, 10.0], ok=[True, True, True, True, False])
    policy = _records([11.0, 11.0, 13.0, 13.0, 1000.0])
    shuffled = policy[:]
    random.Random(0).shuffle(shuffled)
    paired = paired_edp_difference(shuffled, base, "default", batches=2)
    assert paired.requests == 4  # r4 did not finish under the baseline
    assert paired.diff_pct == pytest.approx(20.0) and paired.stderr_pct == pytest.approx(10.0)


def test_too_few_pairs_give_none():
    assert paired_edp_difference(_records([1.0]), _records([1.0]), "default") is None
    assert paired_edp_difference(_records([1.0, 2.0]), _records([1.0, 2.0], ok=[False, False]), "default") is None


def test_unmeasured_energy_and_zero_baseline_give_no_error_bars():
    nan = float("nan")
    paired = paired_edp_difference(_records([11.0, nan, 13.0]), _records([10.0, 10.0, 10.0]), "default")
    assert paired.requests == 2 and paired.diff_pct == pytest.approx(20.0)  # r1 has no EDP under the policy
    assert paired_edp_difference(_records([1.0, 2.0]), _records([0.0, 0.0]), "default") is None


def test_fewer_requests_than_batches_makes_one_batch_each():
    paired = paired_edp_difference(_records([11.0, 13.0, 12.0]), _records([10.0] * 3), "default", batches=20)
    assert paired.batches == 3
    assert paired.stderr_pct == pytest.approx(10.0 * 1.0 / 3**0.5)  # sd of (1, 3, 2) is 1
