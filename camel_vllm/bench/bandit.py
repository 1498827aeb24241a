"""Bandit benchmark: regret of the request-level bandits on synthetic environments (emulated).

These environments give each arm a cost and nothing else (no board to learn per iteration),
so ``camel`` (model-based) has no place here; ``camel-ts``, its request-level contextual
Thompson sampling, does.

Environments are built from the emulated AGX Orin 32GB profile: each (frequency, batch cap)
arm's mean cost (log of a request's EDP in J*s) is computed from the roofline performance and
power model of :mod:`camel_vllm.devices.emulator.roofline` for a steady-state continuous-batching
server under a given load; each request's cost is that mean plus Gaussian noise of
``noise_std`` (log units). All figures are emulated.

- ``stationary``: Camel's setting, one request a second throughout (the engine's observed
  load still varies request to request, as in serving).
- ``shift``: low load for the first half, high load for the second: the best arm changes.

The context a policy sees is built by the real :class:`~camel_vllm.control.context.ContextModel`
from a snapshot of the number of requests in the system (Poisson around the level's mean
concurrency). Regret of a pull = mean cost of the arm played - mean cost of the best arm,
in the environment's current level; the cumulative regret over the horizon is reported.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from camel_vllm.core.arms import CAMEL_BATCH_SIZES, ArmSet
from camel_vllm.core.config import CamelConfig
from camel_vllm.control.context import ContextModel
from camel_vllm.core.events import Context, EngineSnapshot, IterationWork
from camel_vllm.policies.base import Policy
from camel_vllm.policies.baselines import OraclePolicy
from camel_vllm.policies.registry import make_policy
from camel_vllm.policies.decision import DecisionInput

#: Camel's grid on AGX Orin 32GB (MHz; arXiv 2508.09173).
ORIN_32GB_FREQS_MHZ = (306.0, 408.0, 510.0, 612.0, 714.0, 816.0, 930.75)
#: Window (requests) over which an overloaded arm's queue is averaged (the horizon's order).
OVERLOAD_WINDOW_REQUESTS = 2000
#: Arms within this many log units of the best count as "near best" (1% EDP).
NEAR_BEST_LOG = 0.01
#: Policies the benchmark compares (the issue's list) and the ablation of camel's sharing.
#: ``zeus-ts`` is Zeus's default configuration (all history); ``zeus-ts-w10`` its window-10 variant.
BENCH_POLICIES = ("camel-ts", "ts", "zeus-ts", "zeus-ts-w10", "ucb", "epsilon", "grid")
#: Every policy these environments can run: those that learn from a cost per arm.
BANDIT_POLICIES = ("camel-ts", "ts", "zeus-ts", "ucb", "epsilon", "grid", "default", "oracle")
#: Named configurations of a policy that ``policies`` may list beside the policy names.
VARIANTS: dict[str, dict[str, Any]] = {
    "zeus-ts-w10": {"policy": "zeus-ts", "policy_params": {"window": 10}},
}
ABLATIONS: dict[str, dict[str, Any]] = {
    "camel-ts-independent": {"policy": "camel-ts", "policy_params": {"share_strength": 0.0}},
    "camel-ts-flat": {"policy": "camel-ts", "policy_params": {"additive_kappa": 0.0}},
}


@dataclass(frozen=True)
class LoadLevel:
    """A workload level: arrival rate (requests/s) and request shape (tokens)."""

    name: str
    arrival_rate_per_s: float
    prompt_tokens: int = 256
    output_tokens: int = 64


#: Low load: Camel's one request a second with Alpaca-like prompts (<= 70 output tokens).
LOW_LOAD = LoadLevel("low", 1.0)
#: High load: a burst that needs large batches (and a higher clock) to keep up.
HIGH_LOAD = LoadLevel("high", 6.0)


@dataclass(frozen=True)
class Environment:
    """Mean cost per (phase, arm), the phase of each step and its mean concurrency."""

    name: str
    levels: tuple[LoadLevel, ...]
    mean_costs: np.ndarray  # (num_levels, num_arms), log J*s
    concurrency: np.ndarray  # (num_levels,), mean requests in the system
    phase_of_step: np.ndarray  # (horizon,), index into levels


@dataclass
class PolicyResult:
    regrets: list[float] = field(default_factory=list)
    best_share: list[float] = field(default_factory=list)
    near_best_share: list[float] = field(default_factory=list)
    curve_sum: np.ndarray | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        r = np.asarray(self.regrets)
        return {
            "regret_mean": float(r.mean()),
            "regret_p90": float(np.percentile(r, 90)),
            "regret_std": float(r.std()),
            "best_arm_share_last_quarter": float(np.mean(self.best_share)),
            "near_best_share_last_quarter": float(np.mean(self.near_best_share)),
            "seconds": round(self.seconds, 2),
        }


# ------------------------------------------------------------------------ cost model
def orin_arms(num_arms: int = 49) -> ArmSet:
    """Camel's 7 x 7 grid; fewer arms: the first ``num_arms`` in frequency-major order."""
    arms = ArmSet.product([f * 1e6 for f in ORIN_32GB_FREQS_MHZ], CAMEL_BATCH_SIZES)
    if num_arms >= len(arms):
        return arms
    if num_arms < 2:
        raise ValueError("the benchmark needs at least 2 arms")
    step = len(arms) / num_arms
    return ArmSet(tuple(arms[int(i * step)] for i in range(num_arms)))


#: The board the bandit environments are built from: the roofline Orin, whose arms differ widely
#: in cost (a bandit study needs arms to tell apart; on the recalibrated orin-agx-32gb most arms
#: cost within a few per cent of each other, docs/devices.md).
BANDIT_BOARD = "orin-agx-32gb-roofline"


def _performance_model() -> tuple[Callable[[IterationWork, float], float], Callable[[IterationWork, float], float],
                                  str]:
    from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile
    from camel_vllm.devices.emulator.roofline import PerformanceModel

    model = PerformanceModel(load_device_profile(BANDIT_BOARD), load_model_profile("llama-3.2-1b"))
    return (model.iteration_time_s, model.iteration_power_w,
            f"camel_vllm.devices.emulator.roofline ({BANDIT_BOARD}, llama-3.2-1b)")


def level_mean_costs(level: LoadLevel, arms: ArmSet, time_fn: Callable, power_fn: Callable) -> tuple[np.ndarray, float]:
    """Mean log EDP (J*s) per arm under ``level``, and the mean concurrency at the best arm.

    Steady state of a continuous-batching server with cap ``b`` (per arm): with n requests
    decoding, a request lives L(n) = (O t_dec(n) + t_pre) / (1 - lambda t_pre) (decode steps
    plus the prefill stalls of requests arriving meanwhile); n = min(b, lambda L(n)) by
    Little's law (fixed point). Requests beyond the cap queue: the wait is Sakasegawa's
    M/M/c approximation with c = b and service time L(b), utilisation rho = lambda L(b) / b
    (rho >= 0.98 is continued linearly, so an overloaded arm is very costly, not infinite).
    Energy per request = decode energy share (O t_dec(n) P_dec(n) / n) + its prefill energy;
    idle energy is charged to no request, as in the controller's attribution.
    """
    lam, p_tok, o_tok = level.arrival_rate_per_s, level.prompt_tokens, level.output_tokens
    prefill = IterationWork({"p": p_tok}, num_prefill_tokens=p_tok, num_decode_tokens=0)
    costs = np.empty(len(arms))
    conc = np.empty(len(arms))
    for i, arm in enumerate(arms.arms):
        assert arm.freq_hz is not None  # the bandit arms (orin_arms) all name a clock
        f = float(arm.freq_hz)
        t_pre = time_fn(prefill, f)
        e_pre = t_pre * power_fn(prefill, f)
        stall = max(1e-3, 1.0 - lam * t_pre)

        def decode(n: float, f: float = f) -> tuple[float, float]:
            k = max(1, int(round(n)))
            work = IterationWork({f"r{j}": 1 for j in range(k)}, num_prefill_tokens=0, num_decode_tokens=k,
                                 context_tokens=k * (p_tok + o_tok // 2))
            return time_fn(work, f), power_fn(work, f)

        n = 1.0
        for _ in range(30):
            t_dec, _ = decode(n)
            life_s = (o_tok * t_dec + t_pre) / stall
            n = 0.5 * n + 0.5 * min(arm.max_batch, max(1.0, lam * life_s))
        t_dec, p_dec = decode(n)
        life_s = (o_tok * t_dec + t_pre) / stall
        t_full, _ = decode(arm.max_batch)
        service_s = (o_tok * t_full + t_pre) / stall
        c = arm.max_batch
        rho = lam * service_s / c
        wait_s = _mmc_wait_s(rho, c, service_s)
        energy_j = o_tok * t_dec * p_dec / max(n, 1.0) + e_pre
        latency_s = life_s + wait_s
        costs[i] = math.log(energy_j * latency_s)
        conc[i] = min(c, lam * life_s) + lam * wait_s
    return costs, float(conc[int(np.argmin(costs))])


def _mmc_wait_s(rho: float, servers: int, service_s: float) -> float:
    """Queueing wait (s) ahead of a cap of ``servers`` concurrent requests.

    Below saturation: Sakasegawa (1977), Wq ~= rho^(sqrt(2(c+1)) - 1) / (c (1 - rho)) x
    service time (rho capped at 0.98). Overloaded (rho > 1), the queue grows for the whole
    window: after N arrivals it holds N (1 - 1 / rho) requests, so the mean wait over a
    window of OVERLOAD_WINDOW_REQUESTS is (N / 2)(1 - 1 / rho) service / c.
    """
    r = min(rho, 0.98)
    wait = r ** (math.sqrt(2.0 * (servers + 1)) - 1.0) / (servers * (1.0 - r)) * service_s
    if rho > 1.0:
        wait += 0.5 * OVERLOAD_WINDOW_REQUESTS * (1.0 - 1.0 / rho) * service_s / servers
    return wait


def make_environment(name: str, arms: ArmSet, horizon: int) -> tuple[Environment, str]:
    time_fn, power_fn, source = _performance_model()
    if name == "stationary":
        levels: tuple[LoadLevel, ...] = (LOW_LOAD,)
        phase = np.zeros(horizon, dtype=int)
    elif name == "shift":
        levels = (LOW_LOAD, HIGH_LOAD)
        phase = (np.arange(horizon) >= horizon // 2).astype(int)
    else:
        raise ValueError(f"unknown environment {name!r} (known: stationary, shift)")
    table, conc = zip(*(level_mean_costs(lv, arms, time_fn, power_fn) for lv in levels), strict=False)
    return Environment(name, levels, np.vstack(table), np.asarray(conc), phase), source


# ---------------------------------------------------------------------------- running
def environment_draws(env: Environment, seed: int, noise_std: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The environment's randomness for one seed, the same for every policy (and for real Zeus in
    ``benchmarks/zeus_peer.py``): requests in the system per step, the cost noise of each step
    (log units) and arrival times (s; exponential gaps at the level's arrival rate)."""
    rng = np.random.default_rng(10_000 + seed)
    horizon = env.phase_of_step.size
    in_system = rng.poisson(env.concurrency[env.phase_of_step])
    noise = rng.standard_normal(horizon) * noise_std
    rates = np.array([lv.arrival_rate_per_s for lv in env.levels])[env.phase_of_step]
    now_s = np.cumsum(rng.exponential(1.0, horizon) / rates)
    return in_system, noise, now_s


def run_policy(
    policy_name: str,
    env: Environment,
    arms: ArmSet,
    *,
    seed: int,
    noise_std: float,
    overrides: dict[str, Any] | None = None,
) -> tuple[float, float, float, np.ndarray]:
    """One seeded run: (cumulative regret, best-arm share, near-best share, regret curve)."""
    settings = {"policy": policy_name, "seed": seed, **(overrides or {})}
    config = CamelConfig(**settings)
    context_model = ContextModel(contextual=True, max_batch=max(arms.batch_sizes))
    if policy_name == "oracle":  # told the true mean costs, which only this environment knows
        policy: Policy = OraclePolicy(len(arms), env.mean_costs, np.random.default_rng(config.seed))
    else:
        policy = make_policy(config, arms, num_contexts=context_model.num_contexts)
    horizon = env.phase_of_step.size
    in_system, noise, now_s = environment_draws(env, seed, noise_std)
    prompt = [lv.prompt_tokens for lv in env.levels]
    best = env.mean_costs.min(axis=1)
    available = arms.available_indices()
    regret = np.empty(horizon)
    current: int | None = None
    for t in range(horizon):
        ph = int(env.phase_of_step[t])
        running = int(min(in_system[t], max(arms.batch_sizes)))
        snapshot = EngineSnapshot(now_s=float(now_s[t]), num_running=running, num_waiting=int(in_system[t]) - running,
                                  waiting_prompt_tokens=(int(in_system[t]) - running) * prompt[ph])
        context = context_model.context(snapshot)
        if policy_name == "oracle":  # told the true level, not the engine's noisy view of it
            context = Context(id=ph)
        arm = policy.select(DecisionInput(context, available, current))
        mean = env.mean_costs[ph, arm]
        policy.observe(arm, context, float(mean + noise[t]), 1.0)
        regret[t] = mean - best[ph]
        current = arm
    last = slice(horizon - horizon // 4, horizon)
    share = float(np.mean(regret[last] <= 1e-9))  # ties with the best arm count as best
    near = float(np.mean(regret[last] <= NEAR_BEST_LOG))
    return float(regret.sum()), share, near, np.cumsum(regret)


def resolve_policy(label: str) -> tuple[str, str, dict[str, Any] | None]:
    """``label`` -> (label, policy name, config overrides): a policy name or a :data:`VARIANTS` key."""
    spec = VARIANTS.get(label)
    if spec is None:
        return label, label, None
    return label, spec["policy"], {k: v for k, v in spec.items() if k != "policy"}


def run_benchmark(
    *,
    num_arms: int = 49,
    horizon: int = 2000,
    seeds: int = 20,
    envs: Sequence[str] = ("stationary", "shift"),
    policies: Sequence[str] = BENCH_POLICIES,
    ablations: bool = True,
    noise_std: float = 0.25,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every policy on every environment for ``seeds`` seeds; the JSON-ready result."""
    arms = orin_arms(num_arms)
    out: dict[str, Any] = {
        "emulated": True,
        "settings": {"arms": len(arms), "horizon": horizon, "seeds": seeds, "noise_std_log": noise_std,
                     "cost": "log EDP (J*s)"},
        "envs": {},
    }
    runs: list[tuple[str, str, dict[str, Any] | None]] = [resolve_policy(p) for p in policies]
    if ablations:
        runs += [(label, spec["policy"], {k: v for k, v in spec.items() if k != "policy"})
                 for label, spec in ABLATIONS.items()]
    curves: dict[str, dict[str, list[float]]] = {}
    for env_name in envs:
        env, source = make_environment(env_name, arms, horizon)
        out["model_source"] = source
        results: dict[str, PolicyResult] = {}
        for label, name, overrides in runs:
            res = results[label] = PolicyResult()
            started = time.perf_counter()
            for seed in range(seeds):
                total, share, near, curve = run_policy(name, env, arms, seed=seed, noise_std=noise_std,
                                                       overrides=overrides)
                res.regrets.append(total)
                res.best_share.append(share)
                res.near_best_share.append(near)
                res.curve_sum = curve if res.curve_sum is None else res.curve_sum + curve
            res.seconds = time.perf_counter() - started
            if progress:
                progress(f"{env_name:10s} {label:18s} regret {np.mean(res.regrets):8.1f}  ({res.seconds:.1f} s)")
        out["envs"][env_name] = {
            "levels": [lv.__dict__ for lv in env.levels],
            "best_arm": [arms[int(i)].label for i in env.mean_costs.argmin(axis=1)],
            "default_arm_gap": [float(env.mean_costs[k, arms.default_index()] - env.mean_costs[k].min())
                                for k in range(len(env.levels))],
            "mean_cost_spread": [float(np.ptp(row)) for row in env.mean_costs],
            "policies": {label: r.summary() for label, r in results.items()},
        }
        curves[env_name] = {label: (r.curve_sum / seeds).tolist()
                            for label, r in results.items() if r.curve_sum is not None}
    if len(envs) == 1:
        out["policies"] = out["envs"][envs[0]]["policies"]
    out["_curves"] = curves
    return out


def plot_curves(curves: dict[str, dict[str, list[float]]], path: str) -> None:
    """Mean cumulative regret versus requests, one panel per environment (emulated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for ax, (env_name, by_policy) in zip(axes[0], curves.items(), strict=False):
        for label, curve in by_policy.items():
            ax.plot(curve, label=label)
        ax.set_title(f"{env_name} (emulated AGX Orin 32GB)")
        ax.set_xlabel("requests")
        ax.set_ylabel("cumulative regret (log EDP)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ cost-scale study
def cost_scale_study(trace_csv: str, *, requests: int = 4000, seed: int = 0,
                     sensor_noise: float = 0.05) -> dict[str, dict[str, dict[str, float]]]:
    """How Gaussian is each candidate cost, per request, at two arms (emulated)?

    Request lengths come from an Azure-format trace (``ContextTokens``, ``GeneratedTokens``;
    clipped to 2048 / 1024 tokens); each request is priced with the emulated Orin model at a
    fixed arm and running batch, with ``sensor_noise`` multiplicative noise on energy and
    latency. Returns skewness, excess kurtosis, Shapiro-Wilk W (first 2,000) and the KS
    distance to a fitted normal, per cost and arm.
    """
    import csv

    from scipy import stats

    time_fn, power_fn, _ = _performance_model()
    with open(trace_csv, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    prompts = np.clip([int(r["ContextTokens"]) for r in rows], 1, 2048)
    outputs = np.clip([int(r["GeneratedTokens"]) for r in rows], 1, 1024)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), size=min(requests, len(rows)), replace=False)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for freq_hz, batch in ((612e6, 8), (930.75e6, 16)):
        energy, latency = [], []
        for p, o in zip(prompts[pick], outputs[pick], strict=False):
            pre = IterationWork({"p": int(p)}, num_prefill_tokens=int(p), num_decode_tokens=0)
            t_pre = time_fn(pre, freq_hz)
            dec = IterationWork({f"r{j}": 1 for j in range(batch)}, num_prefill_tokens=0, num_decode_tokens=batch,
                                context_tokens=batch * int(p + o // 2))
            t_dec = time_fn(dec, freq_hz)
            e = t_pre * power_fn(pre, freq_hz) + o * t_dec * power_fn(dec, freq_hz) / batch
            lat = t_pre + o * t_dec
            energy.append(e * math.exp(sensor_noise * rng.standard_normal()))
            latency.append(lat * math.exp(sensor_noise * rng.standard_normal()))
        e_arr, l_arr = np.asarray(energy), np.asarray(latency)
        edp = e_arr * l_arr
        costs = {
            "edp_js": edp,
            "log_edp": np.log(edp),
            "weighted_alpha_0.5": 0.5 * e_arr / e_arr.mean() + 0.5 * l_arr / l_arr.mean(),
            "log_edp_per_token2": np.log(edp / (prompts[pick] + outputs[pick]) ** 2.0),
        }
        label = f"{freq_hz / 1e6:g}/{batch}"
        out[label] = {}
        for name, x in costs.items():
            z = (x - x.mean()) / x.std()
            out[label][name] = {
                "skew": float(stats.skew(x)),
                "excess_kurtosis": float(stats.kurtosis(x)),
                "shapiro_w": float(stats.shapiro(x[:2000]).statistic),
                "ks_d": float(stats.kstest(z, "norm").statistic),
                "std": float(x.std()),
            }
    return out
