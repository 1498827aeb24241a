"""Fitting the energy and runtime models (:mod:`.energy_model`) to request logs.

One joint least-squares problem per log: a request served by several arms enters each arm's
block with its share of tokens, the controller's own crediting rule. Optional ridge shrinkage
pulls each arm toward the pooled fit; quality is R^2 on a held-out random split, overall, per
arm and per mean-batch band. docs/seed-systems.md has the method and the measurements.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from camel_vllm.offline.energy_model import EnergyModel, WorkloadFit
from camel_vllm.offline.log_records import SHARES_FIELD, LogData, collect

#: Lower edges of the mean_batch bands held-out R^2 is reported in: powers of two, fixed
#: (not fitted) so bands compare across arms and logs; the profiled batch caps are 8-28.
BAND_EDGES = (1.0, 2.0, 4.0, 8.0, 16.0)
#: A band's R^2 is reported from this many held-out requests on (fewer: count only).
MIN_BAND_REQUESTS = 10

def features(tin: np.ndarray, tout: np.ndarray) -> np.ndarray:
    """The (n, 3) feature matrix [tin, tout, tin*tout]."""
    tin = np.asarray(tin, dtype=float)
    tout = np.asarray(tout, dtype=float)
    return np.column_stack([tin, tout, tin * tout])


def r_squared(y: np.ndarray, y_hat: np.ndarray) -> float | None:
    """1 - SS_res / SS_tot; ``None`` for fewer than 2 points or a constant target."""
    y = np.asarray(y, dtype=float)
    if y.size < 2:
        return None
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= 0.0:
        return None
    return 1.0 - float(np.sum((y - np.asarray(y_hat)) ** 2)) / ss_tot


def _lstsq(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with column scaling (tin*tout is ~1e3 x the other columns)."""
    scale = np.sqrt(np.sum(design**2, axis=0))
    scale[scale == 0.0] = 1.0
    coef, *_ = np.linalg.lstsq(design / scale, y, rcond=None)
    return coef / scale


def fit_energy_model(
    records: Iterable[Mapping[str, Any]],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    runtime_target: str = "latency_s",
    shrinkage: float = 0.0,
    concurrency: bool = True,
) -> EnergyModel:
    """Fit per-arm and pooled models on a random ``1 - test_fraction`` of the records.

    With ``concurrency`` (default) and every record carrying ``iteration_shares``, each
    model gets the concurrency term (module docstring); otherwise the plain Wilkins form,
    with a note saying why.

    ``shrinkage`` (pseudo-requests, default 0 = plain least squares as in Wilkins et al.)
    pulls each arm's coefficients toward the pooled fit with the weight of that many
    requests: an arm seen in few (or only mixed) requests stays near the pooled model. Use
    it on exploring logs (camel's own), where 49 arms x 3 coefficients meet a few hundred
    requests.

    All records must come from one device profile and model profile (see
    :func:`~camel_vllm.offline.log_records.group_by_profile`). Raises ``ValueError`` with fewer than 4 usable records.
    """
    records = list(records)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    data = collect(records, runtime_target)
    n = data.tin.size
    if n < 4:
        raise ValueError(f"need at least 4 requests with energy and arms to fit, got {n}")
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(n, dtype=bool)
    n_test = int(round(test_fraction * n))
    test_mask[rng.permutation(n)[:n_test]] = True
    train = ~test_mask

    notes: list[str] = []
    m = data.iteration_shares if concurrency else None
    if concurrency and m is None:
        notes.append(f"{data.missing_shares} of {n} records lack {SHARES_FIELD} (log older than the field): "
                     "plain Wilkins form per arm, no concurrency term")
    x3 = features(data.tin, data.tout)
    x = x3 if m is None else np.column_stack([x3, m])
    nf = x.shape[1]
    k = len(data.labels)
    design = (data.shares[:, :, None] * x[:, None, :]).reshape(n, nf * k)
    design3 = (data.shares[:, :, None] * x3[:, None, :]).reshape(n, 3 * k)
    pe = _lstsq(x[train], data.energy_j[train])
    pr = _lstsq(x[train], data.runtime_s[train])
    e_coef = _per_arm(x, data.shares, data.energy_j, pe, train, shrinkage)
    r_coef = _per_arm(x, data.shares, data.runtime_s, pr, train, shrinkage)
    if m is not None:  # iteration shares from tokens, at the log's concurrency
        pm = _lstsq(x3[train], m[train])
        m_coef = _per_arm(x3, data.shares, m, pm, train, shrinkage)
    train_weight = data.shares[train].sum(axis=0)
    known = train_weight > 0
    # held-out requests touching an arm never seen in training cannot be predicted: skip them
    scorable = test_mask & (data.shares[:, ~known].sum(axis=1) == 0 if (~known).any() else True)
    e_hat = design @ e_coef
    r_hat = design @ r_coef
    # tokens only: the folded Wilkins coefficients of every arm
    e_fold = np.concatenate([_fold(e_coef[nf * j:nf * j + nf], None if m is None else m_coef[3 * j:3 * j + 3])
                             for j in range(k)])
    r_fold = np.concatenate([_fold(r_coef[nf * j:nf * j + nf], None if m is None else m_coef[3 * j:3 * j + 3])
                             for j in range(k)])
    e_tok = design3 @ e_fold
    r_tok = design3 @ r_fold
    dominant = data.shares.argmax(axis=1)
    mean_batch = _mean_batch(data.tout, m)

    arms: dict[str, WorkloadFit] = {}
    for j, label in enumerate(data.labels):
        if not known[j]:
            continue
        sel = scorable & (dominant == j)
        ej, rj = e_coef[nf * j:nf * j + nf], r_coef[nf * j:nf * j + nf]
        arms[label] = WorkloadFit(
            energy_coef=_floats(e_fold[3 * j:3 * j + 3]),
            runtime_coef=_floats(r_fold[3 * j:3 * j + 3]),
            train_weight=float(train_weight[j]),
            test_requests=int(sel.sum()),
            r2_energy=r_squared(data.energy_j[sel], e_hat[sel]),
            r2_runtime=r_squared(data.runtime_s[sel], r_hat[sel]),
            energy_iteration_j=None if m is None else float(ej[3]),
            runtime_iteration_s=None if m is None else float(rj[3]),
            shares_coef=None if m is None else _floats(m_coef[3 * j:3 * j + 3]),
            r2_energy_tokens_only=r_squared(data.energy_j[sel], e_tok[sel]),
            r2_runtime_tokens_only=r_squared(data.runtime_s[sel], r_tok[sel]),
            typical_batch=_median(mean_batch, train & (dominant == j)),
        )
    e_pool = x[test_mask] @ pe
    r_pool = x[test_mask] @ pr
    pe_fold = _fold(pe, None if m is None else pm)
    pr_fold = _fold(pr, None if m is None else pm)
    pooled = WorkloadFit(
        energy_coef=_floats(pe_fold),
        runtime_coef=_floats(pr_fold),
        train_weight=float(train.sum()), test_requests=int(test_mask.sum()),
        r2_energy=r_squared(data.energy_j[test_mask], e_pool),
        r2_runtime=r_squared(data.runtime_s[test_mask], r_pool),
        energy_iteration_j=None if m is None else float(pe[3]),
        runtime_iteration_s=None if m is None else float(pr[3]),
        shares_coef=None if m is None else _floats(pm),
        r2_energy_tokens_only=r_squared(data.energy_j[test_mask], x3[test_mask] @ pe_fold),
        r2_runtime_tokens_only=r_squared(data.runtime_s[test_mask], x3[test_mask] @ pr_fold),
        typical_batch=_median(mean_batch, train),
    )
    first = records[0] if records else {}
    mixed = int((data.shares.max(axis=1) < 0.999).sum())
    bands = [] if mean_batch is None else _band_scores(
        data, scorable, dominant, mean_batch, e_hat, r_hat)
    return EnergyModel(
        device=first.get("device"),
        device_profile=first.get("device_profile"),
        model_profile=first.get("model_profile"),
        emulated=bool(first.get("emulated", False)),
        arms=arms,
        pooled=pooled,
        r2_energy=r_squared(data.energy_j[scorable], e_hat[scorable]),
        r2_runtime=r_squared(data.runtime_s[scorable], r_hat[scorable]),
        train_requests=int(train.sum()),
        test_requests=int(scorable.sum()),
        test_fraction=test_fraction,
        seed=seed,
        mixed_requests=mixed,
        runtime_target=runtime_target,
        shrinkage=shrinkage,
        notes=notes,
        concurrency=m is not None,
        bands=bands,
    )


def _floats(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


def _fold(coef: np.ndarray, shares_coef: np.ndarray | None) -> np.ndarray:
    """Wilkins coefficients at the log's concurrency: a[:3] + a3 * c (or a as is)."""
    if shares_coef is None:
        return np.asarray(coef[:3], dtype=float)
    return np.asarray(coef[:3], dtype=float) + coef[3] * np.asarray(shares_coef, dtype=float)


def _mean_batch(tout: np.ndarray, shares: np.ndarray | None) -> np.ndarray | None:
    """Per request output tokens / iteration shares (NaN without output); None without m."""
    if shares is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((tout > 0) & (shares > 0), tout / shares, np.nan)


def _median(values: np.ndarray | None, mask: np.ndarray) -> float | None:
    if values is None:
        return None
    vals = values[mask]
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if vals.size else None


def band_label(lo: float, hi: float | None) -> str:
    return f"{lo:g}+" if hi is None else f"{lo:g}-{hi:g}"


def _band_scores(data: LogData, scorable: np.ndarray, dominant: np.ndarray, mean_batch: np.ndarray,
                 e_hat: np.ndarray, r_hat: np.ndarray) -> list[dict[str, Any]]:
    """Held-out R^2 per (arm, mean_batch band) for the bands that hold held-out requests."""
    rows = []
    edges = list(BAND_EDGES) + [None]
    for j, label in enumerate(data.labels):
        for lo, hi in zip(BAND_EDGES, edges[1:], strict=False):
            in_band = np.isfinite(mean_batch) & (mean_batch >= lo) & (True if hi is None else mean_batch < hi)
            if lo == BAND_EDGES[0]:
                in_band = in_band | (np.isfinite(mean_batch) & (mean_batch < lo))  # rounding below 1
            sel = scorable & (dominant == j) & in_band
            count = int(sel.sum())
            if count == 0:
                continue
            enough = count >= MIN_BAND_REQUESTS
            rows.append({"arm": label, "band": band_label(lo, hi), "lo": lo, "hi": hi, "test_requests": count,
                         "r2_energy": r_squared(data.energy_j[sel], e_hat[sel]) if enough else None,
                         "r2_runtime": r_squared(data.runtime_s[sel], r_hat[sel]) if enough else None})
    return rows


def _per_arm(x: np.ndarray, shares: np.ndarray, y: np.ndarray, pooled: np.ndarray, train: np.ndarray,
             shrinkage: float) -> np.ndarray:
    """Per-arm coefficients (F*K) = pooled + deviations; deviations ridge-shrunk to 0.

    Features are scaled to unit mean square, so an arm's block carries about its request
    weight and a ridge of ``shrinkage`` is worth that many requests at the pooled fit.
    """
    n, k = shares.shape
    nf = x.shape[1]
    rms = np.sqrt(np.mean(x[train] ** 2, axis=0))
    rms[rms == 0.0] = 1.0
    xs = x / rms
    design = (shares[:, :, None] * xs[:, None, :]).reshape(n, nf * k)[train]
    target = y[train] - x[train] @ pooled
    if shrinkage > 0.0:
        design = np.vstack([design, math.sqrt(shrinkage) * np.eye(nf * k)])
        target = np.concatenate([target, np.zeros(nf * k)])
        delta, *_ = np.linalg.lstsq(design, target, rcond=None)
    else:
        delta = _lstsq(design, target)
    return np.tile(pooled, k) + delta / np.tile(rms, k)
