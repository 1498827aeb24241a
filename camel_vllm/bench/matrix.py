"""The robustness matrix (``bench matrix``): every policy on every (trace, load) cell, paired.

*Load* is a fraction of what the emulated board can carry on that trace under the default
arm: the trace's requests are all queued at time 0 and served by the ``default`` policy;
their count over the time the last one finishes is the board's capacity in requests per
second on those requests (saturated throughput). Load ``x`` replays the same requests with
arrivals rescaled to ``x`` times that rate (:func:`camel_vllm.traces.transforms.target_rps`,
which keeps the trace's burstiness). Load 1.0 is a board that just keeps up on average;
bursts then build queues that never fully drain.

*Seeds.* Seed ``s`` draws a synthetic trace with seed ``s``, or takes the ``s``-th window of
``requests`` rows of a trace file (back to back, or evenly spaced and overlapping when the
file is shorter than all of them, said in the notes), and seeds the policies and the
device's noise with ``s``.

*Comparisons.* In each cell every policy serves the same requests as ``default`` and as the
best static arm of that seed (the oracle: every arm run as ``static``, best mean EDP in
hindsight). A change is read request by request and pooled over seeds: 100 x the mean
per-request difference over the baseline's mean EDP, with the standard error of 20 batch
means per seed (:func:`camel_vllm.bench.paired.pooled_paired_difference`).

*Targets*: no harm (a policy's change against default is at most
max(2 %, 2 standard errors)) in every cell, and, where the best static arm is at least 5 %
below default, within 5 % of it.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from camel_vllm.bench.latency import latency_summary
from camel_vllm.bench.paired import PairedDifference, pooled_paired_difference
from camel_vllm.bench.sim import (
    ORACLE,
    ORACLE3,
    PolicySpec,
    SimSetup,
    _static_sweep_task,
    arm_set,
    mean_edp_js,
    run_one,
    static_specs,
)
from camel_vllm.core.events import format_mhz
from camel_vllm.sim.engine import SimRun
from camel_vllm.traces import load_trace, transforms
from camel_vllm.traces.base import Trace
from camel_vllm.traces.synthetic import SYNTHETIC_KINDS, synthetic

SYNTHETIC_PREFIX = "synthetic:"
#: Issue 14's thresholds: "no harm" tolerance and "close to the limit" gap (percent).
NO_HARM_PCT = 2.0
NO_HARM_STDERRS = 2.0
ORACLE_GAIN_PCT = 5.0
CLOSE_PCT = 5.0
#: Issue 22's: where the best static triple is this far (percent) below the best static pair,
#: a policy should capture at least half of that headroom.
HEADROOM_PCT = 4.0

#: The README's suite.
DEFAULT_TRACES = (
    "camel_vllm/data/traces/azure_conv_first2000.csv",
    "camel_vllm/data/traces/azure_code_first2000.csv",
    "synthetic:long-prompt",
    "synthetic:short-prompt-long-output",
    "synthetic:on-off",
)
DEFAULT_LOADS = (0.2, 0.5, 0.8, 1.0)


def cell_trace(spec: str, seed: int, requests: int, *, max_context_tokens: int | None = None,
               seeds: int = 1) -> Trace:
    """The requests seed ``seed`` (of ``seeds``) replays from ``spec`` (a file, or ``synthetic:KIND``)."""
    if spec.startswith(SYNTHETIC_PREFIX):
        kind = spec[len(SYNTHETIC_PREFIX):]
        if kind not in SYNTHETIC_KINDS:
            raise ValueError(f"trace {spec}: unknown synthetic kind (known: {', '.join(SYNTHETIC_KINDS)})")
        trace = synthetic(kind, requests, seed=seed)
    else:
        trace = _window(load_trace(spec), seed, requests, seeds)
    return transforms.clip_tokens(trace, max_context_tokens, None)


def _window(full: Trace, seed: int, requests: int, seeds: int = 1) -> Trace:
    """The ``seed``-th of ``seeds`` windows of ``requests`` rows: back to back when the file
    holds them all, else starting evenly spaced through the file (overlapping); a window that
    runs past the end continues from the file's start (arrivals shifted to follow on). At
    most the whole file."""
    n = min(requests, len(full))
    step = n if n * seeds <= len(full) else len(full) // max(1, seeds)
    start = (seed * step) % len(full)
    rows = list(full.requests[start:start + n])
    wrapped = len(rows) < n
    if wrapped:
        gap = full.duration_s / max(1, len(full) - 1)
        shift = rows[-1].arrival_s + gap
        rows += [dataclasses.replace(r, arrival_s=r.arrival_s + shift) for r in full.requests[: n - len(rows)]]
    t0 = rows[0].arrival_s
    rows = [dataclasses.replace(r, arrival_s=r.arrival_s - t0) for r in rows]
    note = (f"seed {seed}: rows {start}..{(start + n - 1) % len(full)} of {len(full)}"
            + (" (wrapped round)" if wrapped else ""))
    if n < requests:
        note += f"; the file has only {len(full)} requests"
    return dataclasses.replace(full, requests=tuple(rows), notes=full.notes + (note,))


def saturated(trace: Trace) -> Trace:
    """Every request of ``trace`` arriving at time 0 (the capacity run)."""
    requests = tuple(dataclasses.replace(r, arrival_s=0.0) for r in trace.requests)
    return dataclasses.replace(trace, requests=requests, notes=trace.notes + ("all requests at t = 0",))


def capacity_rps(run: SimRun) -> float:
    """Requests per second the saturated run served: count over the last finish time."""
    end_s = max((r.finish_s for r in run.records), default=0.0)
    return len(run.records) / end_s if end_s > 0 else float("inf")


@dataclass(frozen=True)
class MatrixPlan:
    """What to run: traces (files or ``synthetic:KIND``), loads, seeds, requests per cell."""

    traces: tuple[str, ...]
    loads: tuple[float, ...]
    seeds: int
    requests: int
    policies: tuple[PolicySpec, ...]
    setup: SimSetup
    max_context_tokens: int | None = None


@dataclass
class CellResult:
    """One (trace, load) cell over every seed."""

    trace: str
    load: float
    capacity_rps: list[float]
    target_rps: list[float]
    mean_edp_js: dict[str, float]
    vs_default: dict[str, dict[str, Any]] = field(default_factory=dict)
    vs_oracle: dict[str, dict[str, Any]] = field(default_factory=dict)
    oracle_arms: list[str] = field(default_factory=list)
    verdicts: dict[str, dict[str, bool | None]] = field(default_factory=dict)
    #: Requests each seed replayed (fewer than the plan's when the trace file is shorter).
    requests: int = 0
    #: The best static (clock, cap, prefill clock) triple of each seed (``oracle3``) and each
    #: policy against it; each learning policy against every other (``vs_peers[a][b]``: a vs b).
    triple_arms: list[str] = field(default_factory=list)
    vs_triple: dict[str, dict[str, Any]] = field(default_factory=dict)
    vs_peers: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: Per policy: p50 and p99 of TTFT and TPOT (s) over every seed's requests, and the share of
    #: requests meeting the configured SLO (``slo_met``; None without an SLO).
    latency: dict[str, dict[str, float | None]] = field(default_factory=dict)


def _task(task: tuple[SimSetup, list[PolicySpec], Trace, tuple]) -> list[tuple[tuple, str, SimRun]]:
    """One policy, or the static arms of one clock (runs a larger cap never exceeded reused:
    :func:`camel_vllm.bench.sim._static_sweep_task`), on one cell's trace."""
    setup, specs, trace, key = task
    if len(specs) == 1:
        return [(key, specs[0].label, run_one(setup, specs[0], trace))]
    return [(key, label, run) for label, run in _static_sweep_task((setup, specs, trace))]


def _pool_map(tasks: list, workers: int, progress: Callable[[int], None] | None) -> list:
    out: list = []
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            results = _task(t)
            out.extend(results)
            if progress:
                progress(len(results))
        return out
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(workers, len(tasks))) as pool:
        for results in pool.imap_unordered(_task, tasks, chunksize=1):
            out.extend(results)
            if progress:
                progress(len(results))
    return out


def count_runs(plan: MatrixPlan) -> int:
    """Simulated runs the plan takes (for a progress bar)."""
    per_cell = len([p for p in plan.policies if p.policy not in (ORACLE, ORACLE3)])
    if any(p.policy in (ORACLE, ORACLE3) for p in plan.policies):
        per_cell += len(arm_set(plan.setup))
    if any(p.policy == ORACLE3 for p in plan.policies):
        arms = arm_set(plan.setup)
        per_cell += 2 * len(arms.frequencies_hz) + len(arms.batch_sizes)
    return len(plan.traces) * plan.seeds * (1 + len(plan.loads) * per_cell)


def _triple(arm: tuple[float, int, float]) -> PolicySpec:
    """The static spec of (clock MHz, batch cap, prefill clock MHz)."""
    mhz, cap, prefill = arm
    label = f"static:{format_mhz(mhz * 1e6)}:{cap}" + ("" if prefill == mhz else f":{format_mhz(prefill * 1e6)}")
    return PolicySpec(label, "static", {"arm": [mhz, cap] + ([] if prefill == mhz else [prefill])})


def _triple_search(plan: MatrixPlan, setups: dict, traces: dict, runs: dict, best_pair: dict, workers: int,
                   progress: Callable[[int], None] | None) -> dict[tuple[str, float, int], str]:
    """The best static (clock, cap, prefill clock) triple in hindsight, per cell and seed: from the
    best static pair, every prefill clock; then, with the best of those, every clock; then every
    cap (coordinate search: three rounds, not the product of all three, which would be
    clocks^2 x caps runs). Returns each (cell, seed)'s best label; its runs join ``runs``."""
    arms = arm_set(plan.setup)
    clocks = [f / 1e6 for f in arms.frequencies_hz if f is not None]
    caps = list(arms.batch_sizes)
    current = {key: (float(best_pair[key][0]), int(best_pair[key][1]), float(best_pair[key][0])) for key in best_pair}
    for axis in ("prefill", "clock", "cap"):
        tasks = []
        for key, (mhz, cap, prefill) in current.items():
            options = {"prefill": [(mhz, cap, p) for p in clocks], "clock": [(f, cap, prefill) for f in clocks],
                       "cap": [(mhz, b, prefill) for b in caps]}[axis]
            for arm in options:
                spec = _triple(arm)
                if spec.label not in runs[key]:
                    tasks.append((setups[key[2]], [spec], traces[key], key))
        for key, label, run in _pool_map(tasks, workers, progress):
            runs[key][label] = run
        for key, (mhz, cap, prefill) in list(current.items()):
            options = {"prefill": [(mhz, cap, p) for p in clocks], "clock": [(f, cap, prefill) for f in clocks],
                       "cap": [(mhz, b, prefill) for b in caps]}[axis]
            current[key] = min(options, key=lambda arm: mean_edp_js(runs[key][_triple(arm).label]))
    return {key: _triple(arm).label for key, arm in current.items()}


def run_matrix(plan: MatrixPlan, *, workers: int = 2,
               progress: Callable[[int], None] | None = None) -> list[CellResult]:
    """Run every cell (see the module docstring); one process pool for all runs."""
    default = PolicySpec("default", "default")
    base: dict[tuple[str, int], Trace] = {}
    for spec in plan.traces:
        for seed in range(plan.seeds):
            base[(spec, seed)] = cell_trace(spec, seed, plan.requests, max_context_tokens=plan.max_context_tokens,
                                            seeds=plan.seeds)
    setups = {seed: dataclasses.replace(plan.setup, config=plan.setup.config.replace(seed=seed))
              for seed in range(plan.seeds)}
    cap_tasks = [(setups[seed], [default], saturated(tr), (spec, seed)) for (spec, seed), tr in base.items()]
    capacity = {key: capacity_rps(run) for key, _, run in _pool_map(cap_tasks, workers, progress)}

    want_triple = any(p.policy == ORACLE3 for p in plan.policies)
    want_oracle = want_triple or any(p.policy == ORACLE for p in plan.policies)
    learners = [p for p in plan.policies if p.policy not in (ORACLE, ORACLE3)]
    if not any(p.label == "default" for p in learners):
        learners.insert(0, default)
    statics = static_specs(arm_set(plan.setup)) if want_oracle else []
    by_clock: dict[object, list[PolicySpec]] = {}
    for static in statics:
        by_clock.setdefault(static.policy_params["arm"][0], []).append(static)
    tasks = []
    traces: dict[tuple[str, float, int], Trace] = {}
    for (spec, seed), tr in base.items():
        for load in plan.loads:
            scaled = transforms.target_rps(tr, load * capacity[(spec, seed)])
            traces[(spec, load, seed)] = scaled
            for group in [*([p] for p in learners), *by_clock.values()]:
                tasks.append((setups[seed], group, scaled, (spec, load, seed)))
    runs: dict[tuple[str, float, int], dict[str, SimRun]] = {}
    for key, label, run in _pool_map(tasks, workers, progress):
        runs.setdefault(key, {})[label] = run
    best_triple: dict[tuple[str, float, int], str] = {}
    if want_triple:
        best_pair = {key: min((s.label for s in statics), key=lambda k: mean_edp_js(runs[key][k])).split(":")[1:]
                     for key in runs}
        best_triple = _triple_search(plan, setups, traces, runs, best_pair, workers, progress)

    cells = []
    for spec in plan.traces:
        for load in plan.loads:
            cells.append(_cell(plan, spec, load, runs, capacity, traces, [s.label for s in statics], learners,
                               best_triple))
    return cells


def _cell(plan: MatrixPlan, spec: str, load: float, runs: dict, capacity: dict, traces: dict,
          static_labels: Sequence[str], learners: Sequence[PolicySpec], best_triple: dict | None = None) -> CellResult:
    seeds = range(plan.seeds)
    per_seed = [runs[(spec, load, s)] for s in seeds]
    oracle_runs: list[SimRun] = []
    oracle_arms: list[str] = []
    for seed_runs in per_seed:
        if static_labels:
            best = min(static_labels, key=lambda k: mean_edp_js(seed_runs[k]))
            oracle_runs.append(seed_runs[best])
            oracle_arms.append(best.split(":", 1)[1].replace(":", "/"))
    triple_labels = [best_triple[(spec, load, s)] for s in seeds] if best_triple else []
    triple_runs = [per_seed[s][label] for s, label in zip(seeds, triple_labels, strict=False)]
    names = [p.label for p in learners] + ([ORACLE] if oracle_runs else []) + ([ORACLE3] if triple_runs else [])

    def runs_of(name: str) -> list[SimRun]:
        if name == ORACLE3:
            return triple_runs
        return oracle_runs if name == ORACLE else [r[name] for r in per_seed]

    cell = CellResult(
        trace=spec, load=load, capacity_rps=[capacity[(spec, s)] for s in seeds],
        target_rps=[load * capacity[(spec, s)] for s in seeds],
        mean_edp_js={n: sum(mean_edp_js(r) for r in runs_of(n)) / plan.seeds for n in names},
        oracle_arms=oracle_arms, requests=len(traces[(spec, load, 0)]),
        triple_arms=[label.split(":", 1)[1].replace(":", "/") for label in triple_labels],
        latency={n: latency_summary([r for run in runs_of(n) for r in run.records], plan.setup.config.slo)
                 for n in names},
    )
    for name in names:
        if name != "default":
            diff = pooled_paired_difference(
                [(a.records, b.records) for a, b in zip(runs_of(name), runs_of("default"), strict=False)], "default")
            if diff is not None:
                cell.vs_default[name] = dataclasses.asdict(diff)
        if oracle_runs and name != ORACLE:
            diff = pooled_paired_difference(
                [(a.records, b.records) for a, b in zip(runs_of(name), oracle_runs, strict=False)], ORACLE)
            if diff is not None:
                cell.vs_oracle[name] = dataclasses.asdict(diff)
        if triple_runs and name != ORACLE3:
            diff = pooled_paired_difference(
                [(a.records, b.records) for a, b in zip(runs_of(name), triple_runs, strict=False)], ORACLE3)
            if diff is not None:
                cell.vs_triple[name] = dataclasses.asdict(diff)
    oracle_gain = cell.vs_default.get(ORACLE)
    headroom = cell.vs_oracle.get(ORACLE3)  # the best triple against the best pair
    peers = [p.label for p in learners if p.label != "default" and p.policy not in ("static", "default")]
    for name in names:
        if name in ("default", ORACLE, ORACLE3):
            continue
        vd, vo = cell.vs_default.get(name), cell.vs_oracle.get(name)
        no_harm = None if vd is None else vd["diff_pct"] <= max(NO_HARM_PCT, NO_HARM_STDERRS * vd["stderr_pct"])
        close = None
        if oracle_gain is not None and vo is not None and oracle_gain["diff_pct"] <= -ORACLE_GAIN_PCT:
            close = vo["diff_pct"] <= CLOSE_PCT
        half = None
        if headroom is not None and vo is not None and headroom["diff_pct"] <= -HEADROOM_PCT:
            half = vo["diff_pct"] <= 0.5 * headroom["diff_pct"]
        cell.verdicts[name] = {"no_harm": no_harm, "close_to_oracle": close, "half_headroom": half}
    for name in peers:  # every learner against every other, request by request
        for other in peers:
            if other != name:
                diff = pooled_paired_difference(
                    [(a.records, b.records) for a, b in zip(runs_of(name), runs_of(other), strict=False)], other)
                if diff is not None:
                    cell.vs_peers.setdefault(name, {})[other] = dataclasses.asdict(diff)
    return cell


__all__ = ["CellResult", "MatrixPlan", "PairedDifference", "capacity_rps", "cell_trace", "count_runs",
           "run_matrix", "saturated"]
