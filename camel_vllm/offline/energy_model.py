"""Workload energy and runtime models after Wilkins, Keshav and Mortier (arXiv 2407.04014).

Per arm, per device and model profile: e(tin, tout) = a0 tin + a1 tout + a2 tin tout (J) and
r(tin, tout) = b0 tin + b1 tout + b2 tin tout (s), with an optional concurrency term a3 m /
b3 m (m: the request's iteration shares). This module holds the fitted models and their file
format; :mod:`.fitting` fits them from request logs, :mod:`.warm_start` turns them into
policy priors, :mod:`.planning` assigns requests to devices with them. docs/seed-systems.md
explains the concurrency term and has the measurements.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

#: Feature names of both models, in coefficient order (``m``: the concurrency term).
FEATURES = ("tin", "tout", "tin*tout")
CONCURRENCY_FEATURE = "m"
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
