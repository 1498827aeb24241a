"""Warm start: prior mean costs per arm from a fitted energy model, for a Thompson policy's
``set_prior_means`` before it has served a request."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.cost import EDP_FLOOR_JS
from camel_vllm.offline.energy_model import EnergyModel


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
