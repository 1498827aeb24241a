"""Workload energy and runtime models after Wilkins, Keshav and Mortier (arXiv 2407.04014).

Per arm (one device profile and model profile per model):

    e(tin, tout) = a0*tin + a1*tout + a2*tin*tout      (J)
    r(tin, tout) = b0*tin + b1*tout + b2*tin*tout      (s)

no intercept, fitted by ordinary least squares from request logs (:mod:`camel_vllm.telemetry.reqlog`).
``tin`` is the request's prompt tokens, ``tout`` its output tokens; ``r`` is fitted by
default to the logged ``latency_s`` (arrival to finish: the latency the controller's EDP
uses; under continuous batching it includes queueing, so it depends on load as well as on
the arm), or to ``decode_s`` (first token to finish) or ``ttft_s``.

Concurrency. A request's energy is its token share of each iteration's energy (the
controller's attribution rule), so it depends on how many requests shared those iterations.
With a saturated engine (Wilkins et al.'s offline setting: the batch always full) the share
per token is stable and e(tin, tout) fits with R^2 ~0.99; at light, bursty load a request
that decodes alone pays whole iterations and the token-only R^2 drops to ~0.55 (Azure trace,
0.3 req/s). Logs that carry ``iteration_shares`` (m: the sum over the iterations that served
the request of its share of each iteration's tokens, recorded by the controller) get one
more term per arm:

    e = a0*tin + a1*tout + a2*tin*tout + a3*m      r = b0*tin + b1*tout + b2*tin*tout + b3*m

An iteration's energy is a part proportional to its tokens (Wilkins et al.'s terms) plus a
part it pays whatever its batch (weights streamed from memory, launches, static power);
split by token share, request i pays a3 per whole iteration: a3 is joules per iteration.
Since m = tout / mean_batch (mean_batch ~ the harmonic mean of the requests in its decode
steps), this is the Wilkins form with a1 replaced by a1 + a3 / mean_batch: the output-token
coefficient depends on concurrency. m is known once the request ran; to predict from tokens
alone each arm also fits m at the log's concurrency, m ~ c0*tin + c1*tout + c2*tin*tout, and
``WorkloadFit.energy_coef`` holds the folded Wilkins coefficients a + a3*c (what planning and
the warm start use; on the same training split, without shrinkage, they equal the plain fit
exactly, by the Frisch-Waugh-Lovell theorem). a3 and b3 mean something only where concurrency varies
(online logs); on a saturated log m ~ tout / cap is nearly collinear with tout. Held-out R^2
is reported both ways (``r2_energy``: m observed; ``r2_energy_tokens_only``: m from tokens)
and per mean_batch band (:data:`BAND_EDGES`). A log without the field (written before it)
gets the plain Wilkins form per arm, with a note.
docs/seed-systems.md has the measurements.

Requests served by several arms (a request outlives a decision epoch) are not dropped: the
fit is one joint least-squares problem whose design row for request i holds, for each arm k,
``share_ik * [tin, tout, tin*tout(, m)]`` (``share_ik``: the share of its tokens served under k,
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

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.cost import EDP_FLOOR_JS

#: Feature names of both models, in coefficient order (``m``: the concurrency term).
FEATURES = ("tin", "tout", "tin*tout")
CONCURRENCY_FEATURE = "m"
#: The log field of the concurrency term (:class:`camel_vllm.core.events.RequestOutcome`).
SHARES_FIELD = "iteration_shares"
#: Lower edges of the mean_batch bands held-out R^2 is reported in: powers of two, fixed
#: (not fitted) so bands compare across arms and logs; the profiled batch caps are 8-28.
BAND_EDGES = (1.0, 2.0, 4.0, 8.0, 16.0)
#: A band's R^2 is reported from this many held-out requests on (fewer: count only).
MIN_BAND_REQUESTS = 10
#: Label of the fit that ignores arms (all requests, one model): used when a device's arm is
#: not fixed, e.g. for planning over devices that run their own controllers.
POOLED = "*"


@dataclass(frozen=True)
class WorkloadFit:
    """One arm's (or the pooled) energy and runtime models, with their held-out quality.

    ``energy_coef``/``runtime_coef`` are Wilkins-form coefficients at the log's concurrency
    (with the concurrency term folded in: a + a3*c). ``energy_iteration_j`` (a3, J per whole
    iteration paid), ``runtime_iteration_s`` (b3, s) and ``shares_coef`` (c: iteration
    shares from tokens at the log's concurrency) are ``None`` for a fit without the term.
    ``train_weight`` is the share-weighted number of training requests; ``test_requests``
    the held-out requests scored for this arm; R^2 is ``None`` below 2 of them.
    ``r2_energy``/``r2_runtime`` score the model with each request's logged shares;
    ``*_tokens_only`` score ``energy_coef``/``runtime_coef`` (tokens alone).
    ``typical_batch`` is the median ``mean_batch`` of the arm's training requests.
    """

    energy_coef: tuple[float, float, float]
    runtime_coef: tuple[float, float, float]
    train_weight: float
    test_requests: int = 0
    r2_energy: float | None = None
    r2_runtime: float | None = None
    energy_iteration_j: float | None = None
    runtime_iteration_s: float | None = None
    shares_coef: tuple[float, float, float] | None = None
    r2_energy_tokens_only: float | None = None
    r2_runtime_tokens_only: float | None = None
    typical_batch: float | None = None

    def energy_j(self, tin: Any, tout: Any, iteration_shares: Any = None) -> Any:
        """Energy (J); with ``iteration_shares`` (m) the concurrency-aware model, else the
        log's typical concurrency. Works on floats and numpy arrays."""
        return _predict(self.energy_coef, self.energy_iteration_j, self.shares_coef, tin, tout, iteration_shares)

    def runtime_s(self, tin: Any, tout: Any, iteration_shares: Any = None) -> Any:
        """Runtime (s), like :meth:`energy_j`."""
        return _predict(self.runtime_coef, self.runtime_iteration_s, self.shares_coef, tin, tout, iteration_shares)

    @property
    def has_concurrency(self) -> bool:
        return self.energy_iteration_j is not None and self.shares_coef is not None


def _predict(coef: Sequence[float], per_iteration: float | None, shares_coef: Sequence[float] | None,
             tin: Any, tout: Any, shares: Any) -> Any:
    c0, c1, c2 = coef
    typical = c0 * tin + c1 * tout + c2 * tin * tout
    if shares is None or per_iteration is None or shares_coef is None:
        return typical
    s0, s1, s2 = shares_coef
    return typical + per_iteration * (shares - (s0 * tin + s1 * tout + s2 * tin * tout))


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
    concurrency: bool = False
    #: Held-out R^2 per (arm, mean_batch band): dicts with arm, band, lo, hi, test_requests,
    #: r2_energy, r2_runtime (R^2 ``None`` below :data:`MIN_BAND_REQUESTS`).
    bands: list[dict[str, Any]] = field(default_factory=list)

    def fit_for(self, label: str) -> WorkloadFit:
        """The fit of arm ``label`` (``"816/20"``) or the pooled fit for ``"*"``."""
        if label == POOLED:
            return self.pooled
        try:
            return self.arms[label]
        except KeyError as err:
            raise KeyError(f"energy model has no fit for arm {label!r} (has: {', '.join(self.arms)})") from err

    def busiest_arm(self) -> str:
        """The arm with the most training weight (the arm a static log was run with)."""
        return max(self.arms, key=lambda k: self.arms[k].train_weight)

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = "camel-vllm-energy-model/1"
        data["features"] = list(FEATURES) + ([CONCURRENCY_FEATURE] if self.concurrency else [])
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
            raise ValueError(f"{source}: malformed energy model: {err}") from err

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
            raise ValueError(f"{path}: not JSON (line {err.lineno})") from err
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not a UTF-8 text file (byte at offset {err.start})") from err
        return cls.from_dict(data, source=path)


def _fit_from(raw: Mapping[str, Any]) -> WorkloadFit:
    shares = raw.get("shares_coef")
    return WorkloadFit(**{**raw, "energy_coef": tuple(raw["energy_coef"]), "runtime_coef": tuple(raw["runtime_coef"]),
                          "shares_coef": None if shares is None else tuple(shares)})


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


def _collect(records: Iterable[Mapping[str, Any]], runtime_target: str) -> _Data:
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
    return _Data(col(0), col(1), col(2), col(3), shares, list(labels), None if missing or n == 0 else m, missing)


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


def _floats(values: Sequence[float]) -> tuple[float, float, float]:
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


def _band_scores(data: _Data, scorable: np.ndarray, dominant: np.ndarray, mean_batch: np.ndarray,
                 e_hat: np.ndarray, r_hat: np.ndarray) -> list[dict[str, Any]]:
    """Held-out R^2 per (arm, mean_batch band) for the bands that hold held-out requests."""
    rows = []
    edges = list(BAND_EDGES) + [None]
    for j, label in enumerate(data.labels):
        for lo, hi in zip(edges[:-1], edges[1:]):
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
    *,
    mean_batch: float | None = None,
) -> list[float]:
    """Prior mean cost per arm on the ``edp`` cost's scale: mean of ln(e * r) over requests.

    ``typical_requests`` are (prompt_tokens, output_tokens) pairs or objects with those
    attributes (a sample of the trace). Concurrency: by default each arm's concurrency in
    the fitted log (the folded ``energy_coef``/``runtime_coef``); with ``mean_batch`` and a
    fit that has the concurrency term, every request at that mean batch (iteration shares
    = tout / mean_batch). Arms the model has no fit for get the mean of the fitted arms'
    priors, so they are neither favoured nor shunned. Feed the result to a TS policy's
    ``set_prior_means(means, strength)``.
    """
    if mean_batch is not None and mean_batch <= 0:
        raise ValueError(f"mean_batch must be > 0, got {mean_batch}")
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
        shares = None if mean_batch is None else tout / mean_batch
        edp = fit.energy_j(tin, tout, shares) * fit.runtime_s(tin, tout, shares)
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
