"""Offline energy-optimal assignment of requests to devices, after Wilkins et al. (arXiv 2407.04014).

Given a fitted workload model per device (:mod:`camel_vllm.offline.energy_model`) and a trace, each
request i is assigned to one device d, with binaries x_id, minimising

    zeta * sum_id x_id E_id / E_ref  +  (1 - zeta) * sum_id x_id R_id / R_ref

subject to sum_d x_id = 1 for each i, and sum_i x_id >= floor(min_share * n) for each d.
E_id, R_id are the modelled energy (J) and runtime (s) of request i on device d;
E_ref = sum_i max_d E_id and R_ref likewise, so both terms lie in [0, 1] (Wilkins et al.
normalise energy and accuracy the same way; we trade energy against runtime). It is solved
exactly by :func:`scipy.optimize.milp` (HiGHS). Baselines: round-robin, uniform random
(seeded), and every device alone (which ignores the minimum share).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from camel_vllm.offline.energy_model import WorkloadFit


@dataclass(frozen=True)
class DeviceModel:
    """One device's model for planning: which fit (arm) of which fitted file."""

    name: str
    fit: WorkloadFit
    arm: str
    emulated: bool = True


@dataclass(frozen=True)
class Assignment:
    """One assignment's totals. ``objective`` is the normalised objective at the plan's zeta."""

    method: str
    energy_j: float
    runtime_s: float
    objective: float
    requests_per_device: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "energy_j": self.energy_j, "runtime_s": self.runtime_s,
                "objective": self.objective, "requests_per_device": dict(self.requests_per_device)}


@dataclass
class PlanResult:
    zeta: float
    min_share: float
    requests: int
    devices: list[str]
    emulated: bool
    assignments: dict[str, Assignment] = field(default_factory=dict)
    device_of: list[int] = field(default_factory=list)

    def saving_vs(self, baseline: str, method: str = "milp") -> float:
        """Relative energy saving of ``method`` against ``baseline`` (0.1 = 10% less energy)."""
        base = self.assignments[baseline].energy_j
        return 1.0 - self.assignments[method].energy_j / base if base > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"zeta": self.zeta, "min_share": self.min_share, "requests": self.requests,
                "devices": self.devices, "emulated": self.emulated,
                "assignments": {k: a.to_dict() for k, a in self.assignments.items()}}


def cost_matrices(models: Sequence[DeviceModel], tokens: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) modelled energy (J) and runtime (s); negative predictions are clipped to 0."""
    tin = np.array([t[0] for t in tokens], dtype=float)
    tout = np.array([t[1] for t in tokens], dtype=float)
    x = np.column_stack([tin, tout, tin * tout])
    energy = np.column_stack([x @ np.array(m.fit.energy_coef) for m in models])
    runtime = np.column_stack([x @ np.array(m.fit.runtime_coef) for m in models])
    return np.maximum(energy, 0.0), np.maximum(runtime, 0.0)


def _weights(energy: np.ndarray, runtime: np.ndarray, zeta: float) -> np.ndarray:
    e_ref = float(energy.max(axis=1).sum()) or 1.0
    r_ref = float(runtime.max(axis=1).sum()) or 1.0
    return zeta * energy / e_ref + (1.0 - zeta) * runtime / r_ref


def min_count(n: int, min_share: float) -> int:
    return int(math.floor(min_share * n + 1e-9))


def solve_milp(energy: np.ndarray, runtime: np.ndarray, zeta: float, min_share: float) -> np.ndarray:
    """The optimal device index per request (exact, :func:`scipy.optimize.milp`)."""
    n, d = energy.shape
    if min_share * d > 1.0 + 1e-9:
        raise ValueError(f"min_share {min_share} x {d} devices exceeds 1: infeasible")
    c = _weights(energy, runtime, zeta).ravel()  # x[i, j] at i * d + j
    rows_a = np.repeat(np.arange(n), d)
    one_each = coo_matrix((np.ones(n * d), (rows_a, np.arange(n * d))), shape=(n, n * d))
    cols_b = np.arange(n * d)
    per_device = coo_matrix((np.ones(n * d), (cols_b % d, cols_b)), shape=(d, n * d))
    constraints = [
        LinearConstraint(one_each, 1, 1),
        LinearConstraint(per_device, min_count(n, min_share), np.inf),
    ]
    res = milp(c, constraints=constraints, integrality=np.ones(n * d), bounds=Bounds(0, 1))
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"milp failed: {res.message}")
    return np.asarray(res.x).reshape(n, d).argmax(axis=1)


def evaluate(method: str, device_of: np.ndarray, energy: np.ndarray, runtime: np.ndarray,
             zeta: float, names: Sequence[str]) -> Assignment:
    idx = np.arange(len(device_of))
    w = _weights(energy, runtime, zeta)
    counts = np.bincount(device_of, minlength=len(names))
    return Assignment(
        method=method,
        energy_j=float(energy[idx, device_of].sum()),
        runtime_s=float(runtime[idx, device_of].sum()),
        objective=float(w[idx, device_of].sum()),
        requests_per_device={name: int(c) for name, c in zip(names, counts, strict=False)},
    )


def plan(models: Sequence[DeviceModel], tokens: Sequence[tuple[int, int]], *, zeta: float,
         min_share: float = 0.1, seed: int = 0) -> PlanResult:
    """Solve the assignment and evaluate it beside round-robin, random and single devices."""
    if not 0.0 <= zeta <= 1.0:
        raise ValueError(f"zeta must be in [0, 1], got {zeta}")
    if len(models) < 2:
        raise ValueError("planning needs at least two device models")
    if not tokens:
        raise ValueError("planning needs at least one request")
    names = [m.name for m in models]
    energy, runtime = cost_matrices(models, tokens)
    n: int  # requests
    d: int  # devices
    n, d = energy.shape
    best = solve_milp(energy, runtime, zeta, min_share)
    result = PlanResult(zeta=zeta, min_share=min_share, requests=n, devices=names,
                        emulated=any(m.emulated for m in models), device_of=best.tolist())
    result.assignments["milp"] = evaluate("milp", best, energy, runtime, zeta, names)
    result.assignments["round-robin"] = evaluate("round-robin", np.arange(n) % d, energy, runtime, zeta, names)
    rng = np.random.default_rng(seed)
    result.assignments["random"] = evaluate("random", rng.integers(0, d, size=n), energy, runtime, zeta, names)
    for j, name in enumerate(names):
        result.assignments[f"only:{name}"] = evaluate(f"only:{name}", np.full(n, j), energy, runtime, zeta, names)
    return result
