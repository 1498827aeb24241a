"""Recheck the bandit benchmark's Zeus peer rows with the real Zeus class, beside camel (emulated).

Drives ``zeus.optimizer.batch_size.server.mab.GaussianTS`` from the ``zeus`` 0.16.0 wheel
(ml-energy/zeus, Apache-2.0) on the environments of ``camel-vllm bench bandit`` (emulated AGX
Orin 32GB, 49 arms; the same cost noise per seed, from
:func:`camel_vllm.bench.bandit.environment_draws`), at Zeus's default ``window_size=0`` (all
history) and at ``window_size=10``, and prints its mean cumulative regret next to camel-vllm's
own ``zeus-ts`` (the rule rebuilt, :mod:`camel_vllm.policies.zeus_ts`), ``zeus-ts-w10`` and
``camel-ts`` (camel's request-level bandit) on the same seeds.

How Zeus is driven: one Zeus job whose batch sizes stand for the arms (arm i is batch size
i + 1), already in its MAB stage with every arm cold (0 observations: the bandit benchmark
starts every policy without data; Zeus's pruning stage is skipped). Each step calls Zeus's own
``GaussianTS.predict`` (exploration, then Thompson sampling with Zeus's seeded generator) and
``GaussianTS.report`` with the step's cost as the trial's energy and ``eta_knob = 1``, so
Zeus's cost ``zeus_cost(energy, time, 1, max_power)`` is exactly the benchmark's cost (log EDP;
Zeus maximises its reward, -cost). Zeus's ``ZeusService`` keeps jobs, trials, arms and the
generator state in a SQL database; :class:`MemoryZeusService` keeps the same things in memory
and answers the calls ``GaussianTS`` makes with the same semantics (succeeded trials newest
first, at most ``window_size`` of them unless it is 0; one ``numpy`` generator seeded with
``mab_seed`` whose state carries over between calls, as ``ZeusService`` stores it). Zeus's
defaults are those of ``zeus/optimizer/batch_size/common.py`` (``JobParams``).

``--check-sql STEPS`` first runs seed 0 for STEPS steps through Zeus's own server stack as well
(``ZeusBatchSizeOptimizer.predict``/``report`` on ``ZeusService`` over an in-memory SQLite
database, needs ``aiosqlite``) and requires every pick to equal the in-memory run's. That
needs numpy < 2 (Zeus's own test extra pins it): under numpy 2 ``Generator.__getstate__()``
returns ``None``, so ``ZeusService._get_generator`` never restores the stored state and reseeds
from the clock (``default_rng(int(datetime.now().timestamp()))``) on every call, and calls in
the same second repeat the same draws.

Zeus needs pydantic < 2, which vLLM does not allow, so run it from its own environment with
this checkout on the path::

    python3 -m venv /tmp/zeusvenv
    /tmp/zeusvenv/bin/pip install "zeus[bso-server]==0.16.0" greenlet PyYAML "numpy<2" "pandas<3" aiosqlite
    PYTHONPATH=. /tmp/zeusvenv/bin/python benchmarks/zeus_peer.py --seeds 20 --horizon 2000 --check-sql 500

Without ``zeus`` (or ``greenlet``, which its server modules import through SQLAlchemy's asyncio
extension) it prints one line saying what to install and exits with status 2; so does
``--check-sql`` without ``aiosqlite`` or under numpy 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camel_vllm.bench.bandit import Environment, environment_draws, make_environment, orin_arms, run_policy

#: The zeus release the peer rule was read from (zeus/optimizer/batch_size/server/mab.py).
ZEUS_VERSION = "0.16.0"
INSTALL_HINT = f'pip install "zeus[bso-server]=={ZEUS_VERSION}" greenlet'
#: Zeus windows compared: its default (0: all history) and the window-10 variant.
WINDOWS = (0, 10)
#: camel-vllm's rows on the same seeds: (label, policy or variant).
CAMEL_ROWS = (("camel-ts", "camel-ts"), ("zeus-ts", "zeus-ts"), ("zeus-ts-w10", "zeus-ts-w10"))
JOB_ID = "camel-peer-0"


def import_zeus() -> dict[str, Any]:
    """Zeus's classes, or SystemExit(2) with one line naming what is missing."""
    try:
        import zeus  # noqa: F401
        from zeus.optimizer.batch_size.server.batch_size_state.commands import UpdateTrial
        from zeus.optimizer.batch_size.server.batch_size_state.models import (
            BatchSizeBase, GaussianTsArmState, TrialResult, TrialResultsPerBs,
        )
        from zeus.optimizer.batch_size.server.database.schema import TrialStatus
        from zeus.optimizer.batch_size.server.job.models import JobState, Stage
        from zeus.optimizer.batch_size.server.mab import GaussianTS
    except ImportError as err:
        print(f"zeus_peer: needs zeus {ZEUS_VERSION} with its batch-size server ({err}); "
              f"install it in a separate venv: {INSTALL_HINT}", file=sys.stderr)
        raise SystemExit(2) from None  # the line above says what is missing; exit quietly
    from importlib.metadata import version

    if version("zeus") != ZEUS_VERSION:
        print(f"zeus_peer: zeus {version('zeus')} is installed; the peer rule was read from {ZEUS_VERSION} "
              f"({INSTALL_HINT})", file=sys.stderr)
        raise SystemExit(2)
    return {"UpdateTrial": UpdateTrial, "BatchSizeBase": BatchSizeBase, "GaussianTsArmState": GaussianTsArmState,
            "TrialResult": TrialResult, "TrialResultsPerBs": TrialResultsPerBs, "TrialStatus": TrialStatus,
            "JobState": JobState, "Stage": Stage, "GaussianTS": GaussianTS}


@dataclass
class MemoryZeusService:
    """The part of ``ZeusService`` that ``GaussianTS`` calls, kept in memory (see module docstring)."""

    z: dict[str, Any]
    job: Any
    rng: np.random.Generator
    arms: dict[int, Any] = field(default_factory=dict)
    results: dict[int, list[Any]] = field(default_factory=dict)  # batch size -> succeeded trials, oldest first

    def get_random_choices(self, choice) -> np.ndarray:
        arr = np.array(choice.choices)
        return self.rng.choice(arr, len(arr), replace=False)  # as ZeusService.get_random_choices

    def get_normal(self, arg) -> float:
        return self.rng.normal(arg.loc, arg.scale)  # as ZeusService.get_normal

    async def get_trial_results_of_bs(self, bs):
        done = self.results.get(bs.batch_size, [])
        newest_first = done[::-1] if self.job.window_size <= 0 else done[::-1][: self.job.window_size]
        return self.z["TrialResultsPerBs"](job_id=bs.job_id, batch_size=bs.batch_size, results=newest_first)

    async def get_arm(self, bs):
        return self.arms.get(bs.batch_size)

    def update_arm_state(self, arm) -> None:
        self.arms[arm.updated_arm.batch_size] = arm.updated_arm

    def update_trial(self, trial) -> None:
        self.results.setdefault(trial.batch_size, []).append(self.z["TrialResult"](
            job_id=trial.job_id, batch_size=trial.batch_size, trial_number=trial.trial_number,
            status=trial.status, time=trial.time, energy=trial.energy, converged=bool(trial.converged)))


def zeus_job(z: dict[str, Any], num_arms: int, window: int, seed: int):
    """A Zeus job in its MAB stage over batch sizes 1..num_arms with Zeus's defaults but the window."""
    return z["JobState"](
        job_id=JOB_ID, job_id_prefix="camel-peer", batch_sizes=list(range(1, num_arms + 1)), default_batch_size=1,
        exp_default_batch_size=1, min_cost_batch_size=1, eta_knob=1.0, beta_knob=None, window_size=window,
        mab_seed=seed, mab_random_generator_state=json.dumps(np.random.default_rng(seed).__getstate__()),
        max_power=1.0, number_of_gpus=1, gpu_model="emulated-orin", stage=z["Stage"].MAB,
    )


def step_cost(env: Environment, noise: np.ndarray, t: int, bs: int, seed: int) -> float:
    """The cost a Zeus trial of batch size ``bs`` (arm bs - 1) reports at step ``t`` (its energy)."""
    cost = float(env.mean_costs[env.phase_of_step[t], bs - 1]) + float(noise[t])
    if cost < 0:
        raise SystemExit(f"zeus_peer: cost {cost:.3f} < 0 cannot be a Zeus trial's energy (seed {seed}, step {t})")
    return cost


async def zeus_regret(z: dict[str, Any], env: Environment, num_arms: int, *, seed: int, window: int,
                      noise_std: float, steps: int | None = None) -> tuple[float, list[int]]:
    """Cumulative regret of the real ``GaussianTS`` over the horizon (or ``steps``) for one seed, and its picks."""
    job = zeus_job(z, num_arms, window, seed)
    service = MemoryZeusService(z, job, np.random.default_rng(seed))
    for bs in job.batch_sizes:  # cold arms: the prior, no observations
        service.arms[bs] = z["GaussianTsArmState"](
            job_id=JOB_ID, batch_size=bs, param_mean=job.mab_prior_mean, param_precision=job.mab_prior_precision,
            reward_precision=0.0, num_observations=0)
    mab = z["GaussianTS"](service)
    _, noise, _ = environment_draws(env, seed, noise_std)
    best = env.mean_costs.min(axis=1)
    regret = 0.0
    picks: list[int] = []
    for t, phase in enumerate(env.phase_of_step[:steps]):
        arms = [service.arms[bs] for bs in job.batch_sizes]
        bs = int(mab.predict(JOB_ID, job.mab_prior_precision, job.mab_num_explorations, arms))
        await mab.report(job, z["UpdateTrial"](
            job_id=JOB_ID, batch_size=bs, trial_number=t + 1, status=z["TrialStatus"].Succeeded,
            time=0.0, energy=step_cost(env, noise, t, bs, seed), converged=True))
        regret += float(env.mean_costs[phase, bs - 1] - best[phase])
        picks.append(bs)
    return regret, picks


async def zeus_sql_picks(z: dict[str, Any], env: Environment, num_arms: int, *, seed: int, window: int,
                         noise_std: float, steps: int) -> list[int]:
    """The same job through Zeus's own server stack: ``ZeusBatchSizeOptimizer.predict``/``report`` on a
    ``ZeusService`` over an in-memory SQLite database (needs ``aiosqlite``), one session per call and a
    commit after it, as Zeus's HTTP router does. Returns the batch sizes it chose."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from zeus.optimizer.batch_size.common import JobSpecFromClient, TrainingResult
    from zeus.optimizer.batch_size.server.database.schema import Base
    from zeus.optimizer.batch_size.server.job.commands import UpdateJobStage
    from zeus.optimizer.batch_size.server.optimizer import ZeusBatchSizeOptimizer
    from zeus.optimizer.batch_size.server.services.service import ZeusService

    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    maker = async_sessionmaker(bind=engine, autocommit=False)
    spec = JobSpecFromClient(
        job_id=JOB_ID, job_id_prefix="camel-peer", batch_sizes=list(range(1, num_arms + 1)), default_batch_size=1,
        eta_knob=1.0, beta_knob=None, window_size=window, mab_seed=seed, max_power=1.0, number_of_gpus=1,
        gpu_model="emulated-orin")
    async with maker() as session:
        await ZeusBatchSizeOptimizer(ZeusService(session)).register_job(spec)
        await session.commit()
    async with maker() as session:
        service = ZeusService(session)
        job = await service.get_job(JOB_ID)
        service.create_arms([z["GaussianTsArmState"](
            job_id=JOB_ID, batch_size=bs, param_mean=job.mab_prior_mean, param_precision=job.mab_prior_precision,
            reward_precision=0.0, num_observations=0) for bs in job.batch_sizes])
        service.update_job_stage(UpdateJobStage(job_id=JOB_ID, stage=z["Stage"].MAB))
        await session.commit()
    _, noise, _ = environment_draws(env, seed, noise_std)
    picks: list[int] = []
    for t in range(steps):
        async with maker() as session:
            trial = await ZeusBatchSizeOptimizer(ZeusService(session)).predict(JOB_ID)
            await session.commit()
        async with maker() as session:
            await ZeusBatchSizeOptimizer(ZeusService(session)).report(TrainingResult(
                job_id=JOB_ID, batch_size=trial.batch_size, trial_number=trial.trial_number, time=0.0,
                energy=step_cost(env, noise, t, trial.batch_size, seed), metric=1.0, current_epoch=1))
            await session.commit()
        picks.append(int(trial.batch_size))
    await engine.dispose()
    return picks


def sql_check_problem() -> str | None:
    """Why ``--check-sql`` cannot run here (one line), or ``None``."""
    try:
        import aiosqlite  # noqa: F401
    except ImportError:
        return "needs aiosqlite for Zeus's SQL service on SQLite (pip install aiosqlite)"
    if np.random.default_rng(0).__getstate__() is None:
        return (f"numpy {np.__version__}: Generator.__getstate__() returns None, so Zeus's server reseeds its "
                "generator from the clock on every call; install numpy<2 (as Zeus's test extra does)")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, default=49)
    parser.add_argument("--horizon", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--noise-std", type=float, default=0.25)
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--check-sql", type=int, default=0, metavar="STEPS",
                        help="first check, for STEPS steps of seed 0 in each environment and window, that Zeus's "
                             "own server stack on SQLite (needs aiosqlite) picks exactly what the in-memory "
                             "service does")
    args = parser.parse_args(argv)
    z = import_zeus()
    import logging

    logging.getLogger("zeus").setLevel(logging.ERROR)  # GaussianTS logs every step at INFO
    arms = orin_arms(args.arms)
    if args.check_sql:
        problem = sql_check_problem()
        if problem:
            print(f"zeus_peer: --check-sql: {problem}", file=sys.stderr)
            return 2
        for env_name in ("stationary", "shift"):
            env, _ = make_environment(env_name, arms, max(args.horizon, args.check_sql))
            for window in WINDOWS:
                kw = dict(seed=0, window=window, noise_std=args.noise_std, steps=args.check_sql)
                memory = asyncio.run(zeus_regret(z, env, len(arms), **kw))[1]
                sql = asyncio.run(zeus_sql_picks(z, env, len(arms), **kw))
                same = sum(a == b for a, b in zip(memory, sql, strict=False))
                print(f"check-sql {env_name} window_size={window}: {same}/{len(sql)} picks identical between "
                      f"Zeus's SQL service and the in-memory one")
                if same != len(sql):
                    return 1
    print(f"real Zeus {ZEUS_VERSION} GaussianTS vs camel-vllm on bench bandit's environments (emulated AGX Orin "
          f"32GB): {len(arms)} arms, horizon {args.horizon}, seeds 0-{args.seeds - 1}, noise {args.noise_std}")
    out: dict[str, Any] = {"emulated": True, "zeus_version": ZEUS_VERSION, "arms": len(arms),
                           "horizon": args.horizon, "seeds": args.seeds, "envs": {}}
    from camel_vllm.bench.bandit import resolve_policy

    for env_name in ("stationary", "shift"):
        env, _ = make_environment(env_name, arms, args.horizon)
        rows: dict[str, list[float]] = {}
        for window in WINDOWS:
            started = time.perf_counter()
            label = f"real Zeus window_size={window}"
            rows[label] = [asyncio.run(zeus_regret(z, env, len(arms), seed=s, window=window,
                                                   noise_std=args.noise_std))[0] for s in range(args.seeds)]
            print(f"  {env_name:10s} {label:26s} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for label, spec in CAMEL_ROWS:
            _, name, overrides = resolve_policy(spec)
            rows[label] = [run_policy(name, env, arms, seed=s, noise_std=args.noise_std, overrides=overrides)[0]
                           for s in range(args.seeds)]
        out["envs"][env_name] = {k: {"regret_mean": float(np.mean(v)), "regret_p90": float(np.percentile(v, 90)),
                                     "regrets": v} for k, v in rows.items()}
    print(f"{'mean cumulative regret (log EDP)':34s} {'stationary':>10s} {'shift':>10s}")
    for label in out["envs"]["stationary"]:
        figures = [out["envs"][e][label]["regret_mean"] for e in ("stationary", "shift")]
        print(f"{label:34s} {figures[0]:10.1f} {figures[1]:10.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
