"""Request-log records as the energy-model fit reads them (the log itself is written by
:mod:`camel_vllm.telemetry.reqlog`): tokens, energy, runtime and the share of each arm."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

#: The log field of the concurrency term (:class:`camel_vllm.core.events.RequestOutcome`).
SHARES_FIELD = "iteration_shares"


@dataclass(frozen=True)
class LogData:
    """The usable records of a request log as arrays (one row per request)."""

    tin: np.ndarray
    tout: np.ndarray
    energy_j: np.ndarray
    runtime_s: np.ndarray
    shares: np.ndarray  # (n, K) share of each arm
    labels: list[str]
    iteration_shares: np.ndarray | None  # (n,) m, or None when any record lacks it
    missing_shares: int  # records without the field


#: Runtime targets: logged fields, and ``decode_s`` = finish_s - first_token_s (the time a
#: request spends decoding, free of queueing: the runtime to fit on saturated logs).
RUNTIME_TARGETS = ("latency_s", "ttft_s", "decode_s")


def _runtime(rec: Mapping[str, Any], target: str) -> float:
    if target == "decode_s":
        return float(rec["finish_s"]) - float(rec["first_token_s"])
    return float(rec[target])


def _shares_of(rec: Mapping[str, Any]) -> float:
    value = rec.get(SHARES_FIELD)
    return math.nan if value is None else float(value)


def collect(records: Iterable[Mapping[str, Any]], runtime_target: str) -> LogData:
    if runtime_target not in RUNTIME_TARGETS:
        raise ValueError(f"runtime target {runtime_target!r} is not one of {', '.join(RUNTIME_TARGETS)}")
    rows: list[tuple[float, float, float, float, float, dict[str, float]]] = []
    labels: dict[str, int] = {}
    for number, rec in enumerate(records, 1):
        try:
            arms = {str(k): float(v) for k, v in rec["arms"].items()}
            row = (float(rec["prompt_tokens"]), float(rec["output_tokens"]),
                   float(rec["energy_j"]), _runtime(rec, runtime_target), _shares_of(rec), arms)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            rid = rec.get("request_id", "?") if isinstance(rec, Mapping) else "?"
            raise ValueError(f"request record {number} (request_id {rid}): missing or bad field {err}") from err
        total = sum(arms.values())
        if total <= 0 or not all(math.isfinite(v) for v in row[:4]):
            continue
        if rec.get("energy_measured") is False:
            continue  # served across a sensor gap: its energy_j is not a measurement (request_log)
        rows.append(row)
        for label in arms:
            labels.setdefault(label, len(labels))
    n, k = len(rows), len(labels)
    shares = np.zeros((n, k))
    for i, row in enumerate(rows):
        arms = row[5]
        total = sum(arms.values())
        for label, share in arms.items():
            shares[i, labels[label]] = share / total
    col = lambda j: np.array([r[j] for r in rows], dtype=float)  # noqa: E731
    m = col(4)
    missing = int((~np.isfinite(m) | (m <= 0)).sum())
    return LogData(col(0), col(1), col(2), col(3), shares, list(labels), None if missing or n == 0 else m, missing)


def group_by_profile(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Split records by (device_profile, model_profile): one model is fitted per group."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        key = (str(rec.get("device_profile")), str(rec.get("model_profile")))
        groups.setdefault(key, []).append(rec)
    return groups
