"""Policies by name, from their declarations: :func:`make_policy` builds the one a configuration names.

Every module of the ``camel_vllm.policies`` package that ends with a ``DECLARATION`` (or
``DECLARATIONS``, :class:`~camel_vllm.policies.declaration.PolicyDeclaration`) is found here: its
name, its ``policy_params`` (defaults and checks), its cadence and its factory. Adding a policy is
one new module; nothing here changes. Every policy draws its randomness from
``numpy.random.default_rng(config.seed)``, so a seeded run is reproducible. Keys a policy does
not declare are a :class:`~camel_vllm.core.config.ConfigError` naming the key.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any, Mapping, Sequence

import numpy as np

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.policies.base import Policy
from camel_vllm.policies.declaration import BuildInputs, Cadence, PolicyDeclaration

__all__ = ["cadence_of", "declaration", "declarations", "make_policy", "policy_names", "policy_param_names",
           "prefill_clocks_hz", "validate_policy"]


@functools.lru_cache(maxsize=1)
def declarations() -> dict[str, PolicyDeclaration]:
    """Every declared policy by name, in listing order (found by walking the package)."""
    import camel_vllm.policies as package

    found: list[PolicyDeclaration] = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith(".registry"):
            continue
        module = importlib.import_module(info.name)
        one = getattr(module, "DECLARATION", None)
        found.extend([one] if one is not None else list(getattr(module, "DECLARATIONS", ())))
    by_name: dict[str, PolicyDeclaration] = {}
    for decl in sorted(found, key=lambda d: (d.listing, d.name)):
        if decl.name in by_name:
            raise RuntimeError(f"policy {decl.name} is declared twice")
        by_name[decl.name] = decl
    return by_name


def policy_names() -> tuple[str, ...]:
    """Every declared policy name, in listing order (``camel`` first)."""
    return tuple(declarations())


def declaration(name: str) -> PolicyDeclaration:
    """The declaration of policy ``name``; a ConfigError naming ``policy`` if there is none."""
    found = declarations().get(name)
    if found is None:
        raise ConfigError("policy", name, f"must be one of {', '.join(policy_names())}")
    return found


def _checked(decl: PolicyDeclaration, given: Mapping[str, Any], *, owner: str | None = None) -> dict[str, Any]:
    """``decl``'s parameters: defaults, then ``given`` checked (a removed key at its old value is
    dropped; any other value of it, or an unknown key, is a ConfigError naming it)."""
    out = decl.defaults()
    known = decl.param_names
    for key, value in given.items():
        if key in decl.removed:
            old, why = decl.removed[key]
            if isinstance(value, bool) or value != old:
                raise ConfigError(f"policy_params.{key}", value, why)
            continue
        if key not in known:
            listing = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"policy_params.{key}", value, f"not a parameter of policy {owner or decl.name} "
                                                             f"(known: {listing})")
        out[key] = value
    for param in decl.params:
        out[param.name] = param.check(param.name, out[param.name])
    return out


def _inner(config: CamelConfig) -> PolicyDeclaration | None:
    """The policy a wrapping policy (``slo``) runs inside it; None: none."""
    name = config.policy_params.get("inner")
    if name in (None, "none"):
        return None
    names = sorted(n for n, d in declarations().items() if not d.wraps_inner and not d.simulation_only)
    if not isinstance(name, str) or name not in names:
        raise ConfigError("policy_params.inner", name, f"must be one of {', '.join(names)} or none")
    return declarations()[name]


def make_policy(
    config: CamelConfig,
    arms: ArmSet,
    *,
    num_contexts: int,
    token_budget: int | None = None,
    switch_latency_s: float = 0.0,
) -> Policy:
    """Build the policy ``config.policy`` names over ``arms`` (its declaration's factory).

    ``token_budget`` is the engine's ``--max-num-batched-tokens`` when known (``camel``);
    ``switch_latency_s`` the device's clock-switch latency. ``oracle`` is not built here: it needs
    the true mean costs, which only a simulator has."""
    decl = declaration(config.policy)
    rng = np.random.default_rng(config.seed)
    if decl.wraps_inner:
        inner = _inner(config)
        params = {"inner": config.policy_params.get("inner")}
        if inner is not None:
            own = {k: v for k, v in config.policy_params.items() if k != "inner"}
            params.update(_checked(inner, own, owner=decl.name))
        else:
            for key, value in config.policy_params.items():
                if key != "inner":
                    raise ConfigError(f"policy_params.{key}", value, f"not a parameter of policy {decl.name} "
                                                                     "(known: inner)")
    else:
        params = _checked(decl, config.policy_params)

    def make_inner(name: str, inner_params: Mapping[str, Any]) -> Policy:
        inner_config = config.replace(policy=name, policy_params=dict(inner_params), slo=None)
        return make_policy(inner_config, arms, num_contexts=num_contexts, token_budget=token_budget,
                           switch_latency_s=switch_latency_s)

    return decl.build(BuildInputs(config=config, arms=arms, params=params, rng=rng, num_contexts=num_contexts,
                                  token_budget=token_budget, switch_latency_s=switch_latency_s,
                                  make_inner=make_inner))


def validate_policy(config: CamelConfig) -> None:
    """The policy name and its parameters, checked without arms (what a declaration can check
    alone; the arms are checked when the policy is built)."""
    decl = declaration(config.policy)
    if decl.wraps_inner:
        inner = _inner(config)
        if inner is not None:
            _checked(inner, {k: v for k, v in config.policy_params.items() if k != "inner"}, owner=decl.name)
    elif not decl.simulation_only:
        _checked(decl, config.policy_params)


def cadence_of(config: CamelConfig) -> Cadence:
    """How the controller paces ``config``'s policy: its declaration's cadence (a wrapping policy
    is paced as its inner one)."""
    decl = declaration(config.policy)
    if decl.wraps_inner:
        inner = _inner(config)
        return inner.cadence if inner is not None else decl.cadence
    return decl.cadence


def prefill_clocks_hz(config: CamelConfig, freqs_hz: Sequence[float | None]) -> list[float]:
    """The clocks the arm set runs prefill steps at for ``config``'s policy (``ArmSet.product``):
    what its declaration (or a wrapper's inner one) says; none without two settable clocks."""
    known = [f for f in freqs_hz if f is not None]
    if len(known) < 2:
        return []
    decl = declaration(config.policy)
    if decl.wraps_inner:
        decl = _inner(config) or decl
    if decl.prefill_clocks is None:
        return []
    return decl.prefill_clocks({**decl.defaults(), **config.policy_params}, known)


def policy_param_names(name: str, params: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The ``policy_params`` keys policy ``name`` takes (a wrapper: ``inner`` and its inner policy's).

    ``params`` is needed for a wrapper only (its ``inner`` decides the rest); unknown names take none.
    """
    decl = declarations().get(name)
    if decl is None:
        return frozenset()
    if decl.wraps_inner:
        inner = (params or {}).get("inner")
        inner_decl = declarations().get(inner) if isinstance(inner, str) else None
        inner_keys = (inner_decl.param_names | frozenset(inner_decl.removed)) if inner_decl else frozenset()
        return frozenset({"inner", *inner_keys})
    return decl.param_names | frozenset(decl.removed)
