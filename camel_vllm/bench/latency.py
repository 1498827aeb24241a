"""Latency figures operators judge serving by: TTFT and TPOT percentiles, and SLO attainment.

Computed over the records of every seed of a matrix cell (or one run), in seconds. TPOT is a
request's mean time per output token after the first (``RequestRecord.tpot_s``). With an SLO
(``slo: {metric, threshold_s, quantile}``), ``slo_met`` is the share of requests whose metric
(``ttft``, ``tpot`` or ``e2e`` latency) is at or below the threshold.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from camel_vllm.core.config import SLOConfig
from camel_vllm.sim.records import RequestRecord


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def slo_value(record: RequestRecord, metric: str) -> float | None:
    """The request's value of an SLO metric (s): ``ttft``, ``tpot`` or ``e2e``."""
    if metric == "ttft":
        return record.ttft_s
    if metric == "tpot":
        return record.tpot_s
    return record.latency_s


def latency_summary(records: Sequence[RequestRecord], slo: SLOConfig | None = None) -> dict[str, float | None]:
    """p50 / p99 of TTFT and TPOT (s) over ``records`` that completed; ``slo_met`` (share, or None)."""
    done = [r for r in records if r.ok]
    ttft = [r.ttft_s for r in done if r.ttft_s is not None]
    tpot = [t for t in (r.tpot_s for r in done) if t is not None]
    met: float | None = None
    if slo is not None and done:
        values = [slo_value(r, slo.metric) for r in done]
        met = sum(1 for v in values if v is not None and v <= slo.threshold_s) / len(done)
    return {"ttft_p50_s": _percentile(ttft, 50), "ttft_p99_s": _percentile(ttft, 99),
            "tpot_p50_s": _percentile(tpot, 50), "tpot_p99_s": _percentile(tpot, 99), "slo_met": met}
