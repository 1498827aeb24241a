"""Paired comparison of two policies' EDP on the same requests, with its standard error.

Every policy in ``bench sim`` serves the same requests, so "camel is 20% below default" can be
read request by request: the difference of the two mean EDPs is the mean of the per-request
differences. Those differences are correlated in time (a burst slows every request in it), so
the standard error comes from *batch means*: the requests, in arrival order, are cut into
``batches`` contiguous groups, and the spread of the groups' mean differences gives the error
(Law, "Simulation Modeling and Analysis", 5th ed., 2015, ch. 9). 20 batches sits in the 10-30
that Schmeiser ("Batch size effects in the analysis of simulation output", Operations Research
30(3), 1982) found enough. The baseline's mean is taken as exact, so the error is of the
difference, expressed in percent of the baseline's mean EDP (a delta-method error that also
counts the baseline mean's noise differs from it by under 3% of its value on the Azure code
trace). Batch means assume the differences are roughly stationary over the run; a learning
policy's early exploration makes its first batches differ, which widens the error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from camel_vllm.sim.records import RequestRecord

#: Batches for the batch-means standard error (Schmeiser 1982: 10 to 30 suffice).
DEFAULT_BATCHES = 20


@dataclass(frozen=True)
class PairedDifference:
    """``policy`` against ``baseline`` over the requests both completed.

    ``diff_pct``: 100 x (mean EDP - baseline's mean EDP) / baseline's mean EDP on those requests
    (negative = lower EDP than the baseline); ``stderr_pct``: its batch-means standard error in
    the same unit.
    """

    baseline: str
    requests: int
    batches: int
    diff_pct: float
    stderr_pct: float


def paired_edp_difference(
    records: Sequence[RequestRecord], baseline_records: Sequence[RequestRecord], baseline: str,
    batches: int = DEFAULT_BATCHES,
) -> PairedDifference | None:
    """None when fewer than 2 requests have an EDP under both (completed, energy measured) or
    the baseline's mean EDP on them is 0: no relative change or error can be given. With fewer
    requests than ``batches`` each request is its own batch."""
    base = {r.request_id: r for r in baseline_records if _has_edp(r)}
    pairs = sorted(((base[r.request_id].arrival_s, r.edp_js, base[r.request_id].edp_js)
                    for r in records if _has_edp(r) and r.request_id in base), key=lambda p: p[0])
    if len(pairs) < 2:
        return None
    base_edp = np.array([p[2] for p in pairs])
    base_mean = float(base_edp.mean())
    if base_mean == 0.0:
        return None
    diffs = np.array([p[1] for p in pairs]) - base_edp
    groups = np.array_split(diffs, min(batches, len(pairs)))
    group_means = np.array([g.mean() for g in groups])
    stderr = float(group_means.std(ddof=1) / np.sqrt(len(groups)))
    return PairedDifference(
        baseline=baseline, requests=len(pairs), batches=len(groups),
        diff_pct=100.0 * float(diffs.mean()) / base_mean, stderr_pct=100.0 * stderr / base_mean,
    )


def _has_edp(record: RequestRecord) -> bool:
    return record.ok and not math.isnan(record.energy_j)


def pooled_paired_difference(
    pairs: Sequence[tuple[Sequence[RequestRecord], Sequence[RequestRecord]]], baseline: str,
    batches: int = DEFAULT_BATCHES,
) -> PairedDifference | None:
    """:func:`paired_edp_difference` pooled over several runs (seeds): each run's requests are
    paired with its baseline's and cut into ``batches`` batch means; the change is the mean
    per-request difference over every run against the baseline's mean EDP over every run,
    and its standard error that of all the batch means together. None when no run pairs."""
    diffs_all: list[np.ndarray] = []
    base_all: list[np.ndarray] = []
    group_means: list[float] = []
    for records, baseline_records in pairs:
        base = {r.request_id: r for r in baseline_records if _has_edp(r)}
        rows = sorted(((base[r.request_id].arrival_s, r.edp_js, base[r.request_id].edp_js)
                       for r in records if _has_edp(r) and r.request_id in base), key=lambda p: p[0])
        if len(rows) < 2:
            continue
        diffs = np.array([p[1] - p[2] for p in rows])
        diffs_all.append(diffs)
        base_all.append(np.array([p[2] for p in rows]))
        group_means.extend(float(g.mean()) for g in np.array_split(diffs, min(batches, len(rows))))
    if not diffs_all or len(group_means) < 2:
        return None
    base_mean = float(np.concatenate(base_all).mean())
    if base_mean == 0.0:
        return None
    diffs = np.concatenate(diffs_all)
    stderr = float(np.std(group_means, ddof=1) / np.sqrt(len(group_means)))
    return PairedDifference(
        baseline=baseline, requests=int(diffs.size), batches=len(group_means),
        diff_pct=100.0 * float(diffs.mean()) / base_mean, stderr_pct=100.0 * stderr / base_mean,
    )
