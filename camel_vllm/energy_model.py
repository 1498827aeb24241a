"""Workload energy and runtime models after Wilkins, Keshav and Mortier (arXiv 2407.04014).

Per arm (one device profile and model profile per model):

    e(tin, tout) = a0*tin + a1*tout + a2*tin*tout      (J)
    r(tin, tout) = b0*tin + b1*tout + b2*tin*tout      (s)

no intercept, fitted by ordinary least squares from request logs (:mod:`camel_vllm.reqlog`).
``tin`` is the request's prompt tokens, ``tout`` its output tokens; ``r`` is fitted by
default to the logged ``latency_s`` (arrival to finish: the latency the controller's EDP
uses; under continuous batching it includes queueing, so it depends on load as well as on
the arm), or to ``decode_s`` (first token to finish) or ``ttft_s``.

Where the models hold: a request's energy is its token share of each iteration's energy
(the controller's attribution rule), so it depends on how many requests shared those
iterations. With a saturated engine (Wilkins et al.'s offline setting: the batch always
full) the share per token is stable and e(tin, tout) fits with R^2 ~0.99; at light, bursty
load a request that decodes alone pays whole iterations and energy R^2 drops (~0.5 on the
Azure trace at 0.3 req/s), while latency fits well (~0.98). docs/seed-systems.md has the
measurements.

Requests served by several arms (a request outlives a decision epoch) are not dropped: the
fit is one joint least-squares problem whose design row for request i holds, for each arm k,
``share_ik * [tin, tout, tin*tout]`` (``share_ik``: the share of its tokens served under k,
from the log's ``arms``). A request served wholly by one arm contributes to that arm's block
only, so with single-arm logs (static policies) the joint fit *is* the per-arm fit; with
mixed logs each arm gets the share-weighted part of the request, the same rule the
controller uses to credit costs. R^2 is measured on a held-out random split; per arm, on the
held-out requests whose largest share is that arm's.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from camel_vllm.arms import ArmSet
from camel_vllm.cost import EDP_FLOOR_JS

#: Feature names of both models, in coefficient order.
FEATURES = ("tin", "tout", "tin*tout")
#: Label of the fit that ignores arms (all requests, one model): used when a device's arm is
#: not fixed, e.g. for planning over devices that run their own controllers.
POOLED = "*"


@dataclass(frozen=True)
class WorkloadFit:
    """One arm's (or the pooled) energy and runtime models, with their held-out quality.

    ``train_weight`` is the share-weighted number of training requests; ``test_requests``
    the held-out requests scored for this arm; R^2 is ``None`` below 2 of them.
    """

    energy_coef: tuple[float, float, float]
    runtime_coef: tuple[float, float, float]
    train_weight: float
    test_requests: int = 0
    r2_energy: float | None = None
    r2_runtime: float | None = None

    def energy_j(self, tin: float, tout: float) -> float:
        a0, a1, a2 = self.energy_coef
        return a0 * tin + a1 * tout + a2 * tin * tout

    def runtime_s(self, tin: float, tout: float) -> float:
        b0, b1, b2 = self.runtime_coef
        return b0 * tin + b1 * tout + b2 * tin * tout


@dataclass
class EnergyModel:
    """Fitted models of one device profile and model profile, per arm plus pooled."""

    device: str | None
    device_profile: str | None
    model_profile: str | None
    emulated: bool
    arms: dict[str, WorkloadFit]
    pooled: WorkloadFit
    r2_energy: float | None
    r2_runtime: float | None
    train_requests: int
    test_requests: int
    test_fraction: float
    seed: int
    mixed_requests: int = 0
    runtime_target: str = "latency_s"
    shrinkage: float = 0.0
    notes: list[str] = field(default_factory=list)

    def fit_for(self, label: str) -> WorkloadFit:
        """The fit of arm ``label`` (``"816/20"``) or the pooled fit for ``"*"``."""
        if label == POOLED:
            return self.pooled
        try:
            return self.arms[label]
        except KeyError:
            raise KeyError(f"energy model has no fit for arm {label!r} (has: {', '.join(self.arms)})") from None

    def busiest_arm(self) -> str:
        """The arm with the most training weight (the arm a static log was run with)."""
        return max(self.arms, key=lambda k: self.arms[k].train_weight)

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = "camel-vllm-energy-model/1"
        data["features"] = list(FEATURES)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> "EnergyModel":
        if data.get("format") != "camel-vllm-energy-model/1":
            raise ValueError(f"{source}: not a camel-vllm energy model (format={data.get('format')!r})")
        try:
            arms = {k: _fit_from(v) for k, v in data["arms"].items()}
            fields = {k: v for k, v in data.items() if k not in ("format", "features", "arms", "pooled")}
            return cls(arms=arms, pooled=_fit_from(data["pooled"]), **fields)
        except (KeyError, TypeError) as err:
            raise ValueError(f"{source}: malformed energy model: {err}") from None

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")

    @classmethod
    def load(cls, path: str) -> "EnergyModel":
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON (line {err.lineno})") from None
        return cls.from_dict(data, source=path)


def _fit_from(raw: Mapping[str, Any]) -> WorkloadFit:
    return WorkloadFit(**{**raw, "energy_coef": tuple(raw["energy_coef"]), "runtime_coef": tuple(raw["runtime_coef"])})


# ------------------------------------------------------------------------ fitting
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


@dataclass(frozen=True)
class _Data:
    tin: np.ndarray
    tout: np.ndarray
    energy_j: np.ndarray
    runtime_s: np.ndarray
    shares: np.ndarray  # (n, K) share of each arm
    labels: list[str]


#: Runtime targets: logged fields, and ``decode_s`` = finish_s - first_token_s (the time a
#: request spends decoding, free of queueing: the runtime to fit on saturated logs).
RUNTIME_TARGETS = ("latency_s", "ttft_s", "decode_s")


def _runtime(rec: Mapping[str, Any], target: str) -> float:
    if target == "decode_s":
        return float(rec["finish_s"]) - float(rec["first_token_s"])
    return float(rec[target])


def _collect(records: Iterable[Mapping[str, Any]], runtime_target: str) -> _Data:
    if runtime_target not in RUNTIME_TARGETS:
        raise ValueError(f"runtime target {runtime_target!r} is not one of {', '.join(RUNTIME_TARGETS)}")
    rows: list[tuple[float, float, float, float, dict[str, float]]] = []
    labels: dict[str, int] = {}
    for number, rec in enumerate(records, 1):
        try:
            arms = {str(k): float(v) for k, v in rec["arms"].items()}
            row = (float(rec["prompt_tokens"]), float(rec["output_tokens"]),
                   float(rec["energy_j"]), _runtime(rec, runtime_target), arms)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            rid = rec.get("request_id", "?") if isinstance(rec, Mapping) else "?"
            raise ValueError(f"request record {number} (request_id {rid}): missing or bad field {err}") from None
        total = sum(arms.values())
        if total <= 0 or not all(math.isfinite(v) for v in row[:4]):
            continue
        rows.append(row)
        for label in arms:
            labels.setdefault(label, len(labels))
    n, k = len(rows), len(labels)
    shares = np.zeros((n, k))
    for i, (_, _, _, _, arms) in enumerate(rows):
        total = sum(arms.values())
        for label, share in arms.items():
            shares[i, labels[label]] = share / total
    col = lambda j: np.array([r[j] for r in rows], dtype=float)  # noqa: E731
    return _Data(col(0), col(1), col(2), col(3), shares, list(labels))


def fit_energy_model(
    records: Iterable[Mapping[str, Any]],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    runtime_target: str = "latency_s",
    shrinkage: float = 0.0,
) -> EnergyModel:
    """Fit per-arm and pooled models on a random ``1 - test_fraction`` of the records.

    ``shrinkage`` (pseudo-requests, default 0 = plain least squares as in Wilkins et al.)
    pulls each arm's coefficients toward the pooled fit with the weight of that many
    requests: an arm seen in few (or only mixed) requests stays near the pooled model. Use
    it on exploring logs (camel's own), where 49 arms x 3 coefficients meet a few hundred
    requests.

    All records must come from one device profile and model profile (see
    :func:`group_by_profile`). Raises ``ValueError`` with fewer than 4 usable records.
    """
    records = list(records)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    data = _collect(records, runtime_target)
    n = data.tin.size
    if n < 4:
        raise ValueError(f"need at least 4 requests with energy and arms to fit, got {n}")
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(n, dtype=bool)
    n_test = int(round(test_fraction * n))
    test_mask[rng.permutation(n)[:n_test]] = True
    train = ~test_mask

    x = features(data.tin, data.tout)
    k = len(data.labels)
    design = (data.shares[:, :, None] * x[:, None, :]).reshape(n, 3 * k)
    pe = _lstsq(x[train], data.energy_j[train])
    pr = _lstsq(x[train], data.runtime_s[train])
    e_coef = _per_arm(x, data.shares, data.energy_j, pe, train, shrinkage)
    r_coef = _per_arm(x, data.shares, data.runtime_s, pr, train, shrinkage)
    train_weight = data.shares[train].sum(axis=0)
    known = train_weight > 0
    # held-out requests touching an arm never seen in training cannot be predicted: skip them
    scorable = test_mask & (data.shares[:, ~known].sum(axis=1) == 0 if (~known).any() else True)
    e_hat = design @ e_coef
    r_hat = design @ r_coef
    dominant = data.shares.argmax(axis=1)

    arms: dict[str, WorkloadFit] = {}
    for j, label in enumerate(data.labels):
        if not known[j]:
            continue
        sel = scorable & (dominant == j)
        arms[label] = WorkloadFit(
            energy_coef=tuple(float(c) for c in e_coef[3 * j:3 * j + 3]),
            runtime_coef=tuple(float(c) for c in r_coef[3 * j:3 * j + 3]),
            train_weight=float(train_weight[j]),
            test_requests=int(sel.sum()),
            r2_energy=r_squared(data.energy_j[sel], e_hat[sel]),
            r2_runtime=r_squared(data.runtime_s[sel], r_hat[sel]),
        )
    pooled = WorkloadFit(
        energy_coef=tuple(float(c) for c in pe), runtime_coef=tuple(float(c) for c in pr),
        train_weight=float(train.sum()), test_requests=int(test_mask.sum()),
        r2_energy=r_squared(data.energy_j[test_mask], x[test_mask] @ pe),
        r2_runtime=r_squared(data.runtime_s[test_mask], x[test_mask] @ pr),
    )
    first = records[0] if records else {}
    mixed = int((data.shares.max(axis=1) < 0.999).sum())
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
    )


def _per_arm(x: np.ndarray, shares: np.ndarray, y: np.ndarray, pooled: np.ndarray, train: np.ndarray,
             shrinkage: float) -> np.ndarray:
    """Per-arm coefficients (3K) = pooled + deviations; deviations ridge-shrunk to 0.

    Features are scaled to unit mean square, so an arm's block carries about its request
    weight and a ridge of ``shrinkage`` is worth that many requests at the pooled fit.
    """
    n, k = shares.shape
    rms = np.sqrt(np.mean(x[train] ** 2, axis=0))
    rms[rms == 0.0] = 1.0
    xs = x / rms
    design = (shares[:, :, None] * xs[:, None, :]).reshape(n, 3 * k)[train]
    target = y[train] - x[train] @ pooled
    if shrinkage > 0.0:
        design = np.vstack([design, math.sqrt(shrinkage) * np.eye(3 * k)])
        target = np.concatenate([target, np.zeros(3 * k)])
        delta, *_ = np.linalg.lstsq(design, target, rcond=None)
    else:
        delta = _lstsq(design, target)
    return np.tile(pooled, k) + delta / np.tile(rms, k)


def group_by_profile(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Split records by (device_profile, model_profile): one model is fitted per group."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        key = (str(rec.get("device_profile")), str(rec.get("model_profile")))
        groups.setdefault(key, []).append(rec)
    return groups


# --------------------------------------------------------------------- warm start
def priors_from_energy_model(
    model: EnergyModel,
    arms: ArmSet,
    typical_requests: Sequence[tuple[int, int]] | Sequence[Any],
) -> list[float]:
    """Prior mean cost per arm on the ``edp`` cost's scale: mean of ln(e * r) over requests.

    ``typical_requests`` are (prompt_tokens, output_tokens) pairs or objects with those
    attributes (a sample of the trace). Arms the model has no fit for get the mean of the
    fitted arms' priors, so they are neither favoured nor shunned. Feed the result to a TS
    policy's ``set_prior_means(means, strength)``.
    """
    pairs = [_pair(r) for r in typical_requests]
    if not pairs:
        raise ValueError("priors_from_energy_model needs at least one typical request")
    tin = np.array([p[0] for p in pairs], dtype=float)
    tout = np.array([p[1] for p in pairs], dtype=float)
    priors: list[float | None] = []
    for arm in arms.arms:
        fit = model.arms.get(arm.label)
        if fit is None:
            priors.append(None)
            continue
        x = features(tin, tout)
        edp = (x @ np.array(fit.energy_coef)) * (x @ np.array(fit.runtime_coef))
        priors.append(float(np.mean(np.log(np.maximum(edp, EDP_FLOOR_JS)))))
    known = [p for p in priors if p is not None]
    if not known:
        raise ValueError(f"energy model has no fit for any of the {len(arms)} arms (it has {', '.join(model.arms)})")
    fill = float(np.mean(known))
    return [fill if p is None else p for p in priors]


def _pair(request: Any) -> tuple[float, float]:
    if isinstance(request, (tuple, list)):
        return float(request[0]), float(request[1])
    return float(request.prompt_tokens), float(request.output_tokens)
