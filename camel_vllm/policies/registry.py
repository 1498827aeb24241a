"""Policies by name: :func:`make_policy` builds the one ``config.policy`` names.

Every policy draws its randomness from ``numpy.random.default_rng(config.seed)``, so a
seeded run is reproducible. ``config.policy_params`` keys per policy (anything else is a
:class:`~camel_vllm.core.config.ConfigError` naming the key):

- ``camel`` (model-based, :mod:`camel_vllm.policies.model_based`): ``warmup_iterations``,
  ``warmup_requests``, ``board_prior`` (``none`` or ``profile``: start the board model from the
  emulator profiles ``device_profile`` / ``model_profile``, e.g. a measured calibration file);
- ``camel-ts`` / ``ts``: ``prior_mean``, ``prior_kappa``, ``prior_alpha``, ``prior_beta``,
  ``share_strength``, ``additive_kappa`` (``ts``: 0), ``additive_kappa_low_load``,
  ``adaptive_prior``, ``slo_min_evidence``, ``queue_guard``, ``change_threshold`` (``ts``: 0),
  ``change_drift`` (see :class:`camel_vllm.policies.thompson.policy.ThompsonParams`);
  ``neighbour_kappa`` was removed (see :data:`REMOVED_PARAMS`);
- ``static``: ``arm`` = [MHZ, BATCH] (MHZ may be "auto" for batch-only arms);
- ``grid``: ``k`` (observations per arm before committing, default 10);
- ``ucb``: ``c`` (bonus multiplier, default 1.0);
- ``epsilon``: ``epsilon`` (default 0.1);
- ``zeus-ts``: ``window`` (default 0: all history, Zeus's default), ``num_explorations`` (default 2);
- ``slo``: :class:`camel_vllm.policies.slo.policy.SLOPolicy` around ``inner`` (a policy name,
  default ``camel``; ``null``/``"none"``: frequency-only), plus the inner policy's keys.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.core.arms import ArmSet, same_frequency
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.policies.base import Policy
from camel_vllm.policies.baselines import (
    DefaultPolicy,
    EpsilonGreedyPolicy,
    GridPolicy,
    StaticPolicy,
    UCBPolicy,
)
from camel_vllm.policies.model_based import ModelBasedPolicy, ModelParams
from camel_vllm.policies.thompson.nig import NIGPrior
from camel_vllm.policies.thompson.policy import ThompsonParams, ThompsonPolicy
from camel_vllm.policies.zeus_ts import ZEUS_NUM_EXPLORATIONS, ZEUS_WINDOW, ZeusTSPolicy

__all__ = ["PREFILL_CLOCK_CHOICES", "REMOVED_PARAMS", "make_policy", "policy_param_names", "prefill_clocks_hz"]

#: ``camel``'s ``policy_params.prefill_clock``: ``top`` adds arms whose prefill steps run at the top
#: clock (the clock follows the work; docs/camel-model.md), ``same`` runs every step at the arm's.
PREFILL_CLOCK_CHOICES = ("top", "same")

_PARAMS: dict[str, dict[str, Any]] = {
    "camel": {"warmup_iterations": ModelParams.warmup_iterations, "warmup_requests": ModelParams.warmup_requests,
              "board_prior": "none", "prefill_clock": "top"},
    "camel-ts": {
        "prior_mean": NIGPrior.mean, "prior_kappa": NIGPrior.kappa, "prior_alpha": NIGPrior.alpha,
        "prior_beta": NIGPrior.beta, "share_strength": ThompsonParams.share_strength,
        "additive_kappa": ThompsonParams.additive_kappa,
        "adaptive_prior": ThompsonParams.adaptive_prior, "slo_min_evidence": ThompsonParams.slo_min_evidence,
        "queue_guard": ThompsonParams.queue_guard, "additive_kappa_low_load": ThompsonParams.additive_kappa_low_load,
        "change_threshold": ThompsonParams.change_threshold, "change_drift": ThompsonParams.change_drift,
    },
    "default": {},
    "static": {"arm": None},
    "grid": {"k": 10.0},
    "ucb": {"c": 1.0},
    "epsilon": {"epsilon": 0.1},
    "zeus-ts": {"window": ZEUS_WINDOW, "num_explorations": ZEUS_NUM_EXPLORATIONS},
    "voltana": {"tpot_slo_s": None, "ttft_slo_s": None},
    "oracle": {},
}
#: ``ts`` is Camel's paper bandit: flat prior (no additive grid prior), no contexts, no change detection.
_PARAMS["ts"] = {**_PARAMS["camel-ts"], "additive_kappa": 0.0, "change_threshold": 0.0}
#: ``policy_params`` keys that were removed: (policies, the value that behaves as before, why).
#: That value is still accepted (a config that spelled out the old default loads unchanged);
#: any other is a one-line ConfigError.
REMOVED_PARAMS: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "neighbour_kappa": (("camel-ts", "ts"), 0, "removed: a study knob (grid-neighbour prior) that never became a "
                        "default; additive_kappa (the additive grid prior) does its work; leave it out"),
}


def make_policy(
    config: CamelConfig,
    arms: ArmSet,
    *,
    num_contexts: int,
    token_budget: int | None = None,
    switch_latency_s: float = 0.0,
) -> Policy:
    """Build the policy ``config.policy`` names over ``arms``.

    ``token_budget`` is the engine's ``--max-num-batched-tokens`` when known (``camel``).
    ``oracle`` is not built here: it needs the true mean costs, which only a simulator has
    (:func:`camel_vllm.bench.bandit.run_policy` builds :class:`~camel_vllm.policies.baselines.OraclePolicy` itself)."""
    name = config.policy
    rng = np.random.default_rng(config.seed)
    if name == "slo":
        return _make_slo(config, arms, num_contexts)
    params = _params(name, config.policy_params)
    if name == "camel":
        return _make_model_based(config, arms, params, rng, token_budget, switch_latency_s)
    if name in ("camel-ts", "ts"):
        return ThompsonPolicy(
            name=name,
            num_arms=len(arms),
            num_contexts=num_contexts,
            contextual=name == "camel-ts" and config.contextual,
            rng=rng,
            arm_freqs_hz=[a.freq_hz for a in arms.arms],
            arm_batches=[a.max_batch for a in arms.arms],
            params=ThompsonParams(
                prior=NIGPrior(
                    mean=_number(params, "prior_mean"),
                    kappa=_number(params, "prior_kappa", positive=True),
                    alpha=_number(params, "prior_alpha", positive=True),
                    beta=_number(params, "prior_beta", positive=True),
                ),
                share_strength=_number(params, "share_strength", non_negative=True),
                additive_kappa=_number(params, "additive_kappa", non_negative=True),
                adaptive_prior=_flag(params, "adaptive_prior"),
                slo_min_evidence=_number(params, "slo_min_evidence", non_negative=True),
                queue_guard=_flag(params, "queue_guard"),
                additive_kappa_low_load=_number(params, "additive_kappa_low_load", non_negative=True),
                change_threshold=_number(params, "change_threshold", non_negative=True),
                change_drift=_number(params, "change_drift", non_negative=True),
            ),
            switch_cost=config.switch_cost,
            slo=config.slo,
        )
    if name == "default":
        return DefaultPolicy(arms, rng)
    if name == "static":
        return StaticPolicy(arms, _static_arm(arms, params["arm"]), rng)
    if name == "grid":
        return GridPolicy(len(arms), _number(params, "k", positive=True), rng)
    if name == "ucb":
        return UCBPolicy(len(arms), _number(params, "c", non_negative=True), rng)
    if name == "epsilon":
        eps = _number(params, "epsilon", non_negative=True)
        if eps > 1.0:
            raise ConfigError("policy_params.epsilon", eps, "must be in [0, 1]")
        return EpsilonGreedyPolicy(len(arms), eps, rng)
    if name == "zeus-ts":
        return ZeusTSPolicy(
            len(arms), rng,
            window=_integer(params, "window", minimum=0),
            num_explorations=_integer(params, "num_explorations", minimum=0),
        )
    if name == "voltana":
        return _make_voltana(config, arms, params)
    if name == "oracle":
        raise ConfigError("policy", name, "oracle needs the true mean costs (simulation only)")
    raise ConfigError("policy", name, "unknown policy")


def _make_voltana(config: CamelConfig, arms: ArmSet, params: Mapping[str, Any]) -> Policy:
    """``voltana``: its TPOT SLO from ``policy_params.tpot_slo_s``, else the config's ``slo`` when its
    metric is tpot, else VoltanaLLM's demo SLO; prefill steps at the top clock unless ``ttft_slo_s``."""
    from camel_vllm.policies.voltana import DEMO_TPOT_SLO_S, VoltanaPolicy

    tpot = params["tpot_slo_s"]
    if tpot is None:
        tpot = config.slo.threshold_s if config.slo is not None and config.slo.metric == "tpot" else DEMO_TPOT_SLO_S
    ttft = params["ttft_slo_s"]
    if ttft is None and config.slo is not None and config.slo.metric == "ttft":
        ttft = config.slo.threshold_s
    for key, value in (("tpot_slo_s", tpot), ("ttft_slo_s", ttft)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
            raise ConfigError(f"policy_params.{key}", value, "must be a positive number of seconds")
    return VoltanaPolicy(arms, tpot_slo_s=float(tpot), ttft_slo_s=None if ttft is None else float(ttft))


def _make_model_based(config: CamelConfig, arms: ArmSet, params: Mapping[str, Any], rng: np.random.Generator,
                      token_budget: int | None, switch_latency_s: float = 0.0) -> Policy:
    """``camel``: the model-based policy, optionally started from the emulator profile's board."""
    if params["prefill_clock"] not in PREFILL_CLOCK_CHOICES:
        raise ConfigError("policy_params.prefill_clock", params["prefill_clock"],
                          f"must be one of {', '.join(PREFILL_CLOCK_CHOICES)}")
    policy = ModelBasedPolicy(
        arms, rng, epoch_iterations=config.epoch_iterations, epoch_s=config.epoch_s, cost=config.cost, alpha=config.alpha,
        switch_cost=config.switch_cost, slo=config.slo, token_budget=token_budget, switch_latency_s=switch_latency_s,
        params=ModelParams(warmup_iterations=_integer(params, "warmup_iterations", minimum=0),
                           warmup_requests=_integer(params, "warmup_requests", minimum=1)),
    )
    prior = params["board_prior"]
    if prior == "profile":
        from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile
        from camel_vllm.devices.emulator.roofline import PerformanceModel
        from camel_vllm.policies.model_based.profile_prior import profile_prior

        model = PerformanceModel(load_device_profile(config.device_profile), load_model_profile(config.model_profile))
        policy.board.set_prior(*profile_prior(model, [a.freq_hz for a in arms.arms], policy.board.knots))
    elif prior != "none":
        raise ConfigError("policy_params.board_prior", prior, 'must be "none" or "profile"')
    return policy


def _make_slo(config: CamelConfig, arms: ArmSet, num_contexts: int) -> Policy:
    """The SLO policy (after throttLL'eM) around an optional inner policy.

    ``policy_params.inner`` absent, ``null`` or ``"none"``: frequency-only, as throttLL'eM
    (the lowest SLO-safe frequency at the largest batch cap); ``"camel"`` (or another
    policy name): that policy chooses among the SLO-safe arms. The inner policy is built
    without ``slo`` (the SLO policy owns the guard) from the params that are its own."""
    try:
        from camel_vllm.policies.slo.policy import SLOPolicy
    except ImportError as err:
        raise ConfigError("policy", "slo", f"the SLO policy module is not available ({err})") from err
    inner_name = config.policy_params.get("inner")
    given = _without_removed(inner_name, config.policy_params) if isinstance(inner_name, str) else config.policy_params
    if inner_name in (None, "none"):
        inner = None
        known: dict[str, Any] = {}
    else:
        if not isinstance(inner_name, str) or inner_name not in _PARAMS:
            raise ConfigError("policy_params.inner", inner_name, f"must be one of {', '.join(sorted(_PARAMS))} or none")
        known = _PARAMS[inner_name]
    for key, value in given.items():
        if key != "inner" and key not in known:
            listing = ", ".join(sorted(["inner", *known]))
            raise ConfigError(f"policy_params.{key}", value, f"not a parameter of policy slo (known: {listing})")
    if inner_name not in (None, "none"):
        inner_params = {k: v for k, v in given.items() if k in known}
        inner_config = config.replace(policy=inner_name, policy_params=inner_params, slo=None)
        inner = make_policy(inner_config, arms, num_contexts=num_contexts)
    return SLOPolicy(config, arms, num_contexts, inner)


def _params(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    known = _PARAMS[name]
    given = _without_removed(name, given)
    for key in given:
        if key not in known:
            listing = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"policy_params.{key}", given[key], f"not a parameter of policy {name} (known: {listing})")
    return {**known, **given}


def _without_removed(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` less the removed keys set to their old no-op value; a ConfigError for any other value."""
    kept = {}
    for key, value in given.items():
        removed = REMOVED_PARAMS.get(key)
        if removed is None or name not in removed[0]:
            kept[key] = value
        elif isinstance(value, bool) or value != removed[1]:
            raise ConfigError(f"policy_params.{key}", value, removed[2])
    return kept


def _number(params: Mapping[str, Any], key: str, *, positive: bool = False, non_negative: bool = False) -> float:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ConfigError(f"policy_params.{key}", value, "must be a number")
    if positive and value <= 0:
        raise ConfigError(f"policy_params.{key}", value, "must be > 0")
    if non_negative and value < 0:
        raise ConfigError(f"policy_params.{key}", value, "must be >= 0")
    return float(value)


def _integer(params: Mapping[str, Any], key: str, *, minimum: int) -> int:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"policy_params.{key}", value, f"must be an integer >= {minimum}")
    return value


def _flag(params: Mapping[str, Any], key: str) -> bool:
    value = params[key]
    if not isinstance(value, bool):
        raise ConfigError(f"policy_params.{key}", value, "must be true or false")
    return value


def static_prefill_mhz(spec: Any) -> float | None:
    """The prefill clock (MHz) a static arm ``[MHZ, BATCH, PREFILL_MHZ]`` names (None: none)."""
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and isinstance(spec[2], (int, float)) \
            and not isinstance(spec[2], bool):
        return float(spec[2])
    return None


def _static_arm(arms: ArmSet, spec: Any) -> int:
    """Index of the arm ``[MHZ, BATCH]`` (or ``[MHZ, BATCH, PREFILL_MHZ]``: prefill steps at that
    clock) names; ConfigError naming policy_params.arm if absent."""
    offered = ", ".join(a.label for a in arms.arms)
    if not isinstance(spec, (list, tuple)) or len(spec) not in (2, 3):
        raise ConfigError("policy_params.arm", spec, 'static needs arm: [MHZ, BATCH] (MHZ may be "auto") or '
                                                     "[MHZ, BATCH, PREFILL_MHZ]")
    mhz, batch = spec[0], spec[1]
    prefill = static_prefill_mhz(spec)
    if len(spec) == 3 and prefill is None:
        raise ConfigError("policy_params.arm", list(spec), "PREFILL_MHZ must be a number")
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise ConfigError("policy_params.arm", list(spec), "BATCH must be an integer")

    def same(freq_hz: float | None, value: Any) -> bool:
        if freq_hz is None or value in (None, "auto"):
            return freq_hz is None and value in (None, "auto")
        return isinstance(value, (int, float)) and not isinstance(value, bool) and same_frequency(freq_hz, value * 1e6)

    if prefill is not None and isinstance(mhz, (int, float)) and not isinstance(mhz, bool) \
            and same_frequency(mhz * 1e6, prefill * 1e6):
        prefill = None  # prefill at the arm's own clock: the plain arm
    for i, arm in enumerate(arms.arms):
        if arm.max_batch != batch or not same(arm.freq_hz, mhz):
            continue
        if (prefill is None and arm.prefill_freq_hz is None) or (
                prefill is not None and arm.prefill_freq_hz is not None and same(arm.prefill_freq_hz, prefill)):
            return i
    raise ConfigError("policy_params.arm", list(spec), f"not in the arm set (arms: {offered})")


def prefill_clocks_hz(config: CamelConfig, freqs_hz: Sequence[float | None]) -> list[float]:
    """The prefill clocks the arm set adds for ``config``'s policy (see ArmSet.product): the top
    clock for ``camel`` (``prefill_clock: top``, also as ``slo``'s inner policy), the clock a
    static arm's third entry names, none otherwise or without settable clocks."""
    known = [f for f in freqs_hz if f is not None]
    if len(known) < 2:
        return []
    name, params = config.policy, dict(config.policy_params)
    if name == "slo" and params.get("inner") == "camel":
        name = "camel"
    if name == "camel" and params.get("prefill_clock", _PARAMS["camel"]["prefill_clock"]) == "top":
        return [max(known)]
    if name == "static":
        prefill = static_prefill_mhz(params.get("arm"))
        if prefill is not None:
            match = min(known, key=lambda f: abs(f - prefill * 1e6))
            if same_frequency(match, prefill * 1e6):
                return [match]
    return []


def policy_param_names(name: str, params: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The ``policy_params`` keys policy ``name`` takes (``slo``: ``inner`` and its inner policy's).

    ``params`` is needed for ``slo`` only (its ``inner`` decides the rest); unknown names take none.
    """
    if name == "slo":
        inner = (params or {}).get("inner")
        inner_keys = policy_param_names(inner) if isinstance(inner, str) else frozenset()
        return frozenset({"inner", *inner_keys})
    removed = {key for key, (names, _, _) in REMOVED_PARAMS.items() if name in names}
    return frozenset(_PARAMS.get(name, {})) | removed
