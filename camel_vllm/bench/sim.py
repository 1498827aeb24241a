"""Run several policies on one trace in the simulator and summarise them (``bench sim``).

Every policy replays the same requests on a fresh emulated device (``emulation_time:
absolute``, seeded the same), through :func:`camel_vllm.wiring.build.build_controller`, i.e. the
controller, policies and cost the vLLM scheduler uses. ``oracle`` is the best static arm
in hindsight: every arm is run as ``static`` on the trace and the one with the lowest mean
EDP is reported under that name (its arm is in ``details.oracle.arm``). Runs go to a pool
of ``workers`` processes (2 on the project's 2-core machine).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from camel_vllm.bench.paired import paired_edp_difference
from camel_vllm.bench.pool import local_results, pool_results, report_progress
from camel_vllm.bench.results import BenchResult, PolicyResult
from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.sim.engine import EngineConfig, SimEngine, SimRun, VirtualClock
from camel_vllm.traces.base import Trace

if TYPE_CHECKING:
    from camel_vllm.devices.emulator.device import EmulatedDevice

logger = logging.getLogger("vllm.camel")

ORACLE = "oracle"
#: The best static (clock, batch cap, prefill clock) triple in hindsight: ``bench matrix`` only.
ORACLE3 = "oracle3"
#: The policy every other one is compared with, request by request (:mod:`camel_vllm.bench.paired`).
BASELINE = "default"


@dataclass(frozen=True)
class PolicySpec:
    """A policy to run: the label it is reported under and the config changes it needs."""

    label: str
    policy: str
    policy_params: dict[str, Any] = field(default_factory=dict)


def parse_policies(text: str) -> list[PolicySpec]:
    """``"default,grid,camel,oracle,static:612:16"`` -> specs (``oracle`` is computed, not run)."""
    from camel_vllm.policies.registry import policy_names

    names = policy_names()

    specs: list[PolicySpec] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if any(spec.label == item for spec in specs):
            raise ConfigError("policies", item, "is listed twice")
        if item.startswith("static:"):
            parts = item.split(":")
            if len(parts) not in (3, 4):
                raise ConfigError("policies", item, "write a static arm as static:MHZ:BATCH, e.g. static:612:16 "
                                  "(or static:MHZ:BATCH:PREFILL_MHZ: prefill steps at that clock)")
            if parts[1] == "auto":
                raise ConfigError("policies", item, "bench sim's emulated device sets clocks: write MHZ as a "
                                  "frequency, e.g. static:612:16 (auto is for devices whose clock camel cannot set)")
            try:
                mhz = float(parts[1])
                batch = int(parts[2])
            except ValueError as err:
                raise ConfigError("policies", item, "MHZ must be a number and BATCH an integer") from err
            if not math.isfinite(mhz) or mhz <= 0 or batch < 1:
                raise ConfigError("policies", item, "MHZ must be a frequency > 0 and BATCH an integer >= 1")
            arm: list[Any] = [mhz, batch]
            if len(parts) == 4:
                try:
                    arm.append(float(parts[3]))
                except ValueError as err:
                    raise ConfigError("policies", item, "PREFILL_MHZ must be a number") from err
            specs.append(PolicySpec(item, "static", {"arm": arm}))
        elif item in (ORACLE, ORACLE3) or item in names:
            specs.append(PolicySpec(item, item))
        else:
            raise ConfigError("policies", item, f"unknown policy (known: {', '.join(names)}, oracle3, "
                                                "static:MHZ:BATCH[:PREFILL_MHZ])")
    if not specs:
        raise ConfigError("policies", text, "name at least one policy")
    return specs


#: Policies that learn nothing, so have no state to carry from one run to the next.
STATELESS_POLICIES = frozenset({"default", "static", ORACLE, ORACLE3})


@dataclass(frozen=True)
class SimSetup:
    """What every run shares: the base camel config, the engine limits and where learned state lives.

    ``state_dir``: each learning policy starts from ``STATE_DIR/LABEL.json`` when it exists and
    writes what it learned there (the plugin's ``state_path``, atomic saves), so running ``bench
    sim`` on one trace and then on another replays camel's persistent learning. ``None``: every
    run starts cold and writes nothing.
    """

    config: CamelConfig
    engine: EngineConfig = EngineConfig()
    state_dir: str | None = None

    @classmethod
    def make(cls, *, device_profile: str | None = None, model_profile: str | None = None, seed: int | None = None,
             base: CamelConfig | None = None, engine: EngineConfig = EngineConfig(),
             state_dir: str | None = None) -> "SimSetup":
        """The setup for ``base`` (a camel config, e.g. ``bench sim --config``) on the emulator.

        ``device_profile``, ``model_profile`` and ``seed`` override ``base``'s keys; ``None``
        keeps ``base``'s (its file's, else the config defaults). An unknown profile is a
        :class:`ConfigError` naming the key, raised here, before any run.
        """
        from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile

        base = base or CamelConfig()
        config = base.replace(
            device="emulated", device_profile=base.device_profile if device_profile is None else device_profile,
            model_profile=base.model_profile if model_profile is None else model_profile,
            seed=base.seed if seed is None else seed, emulation_time="absolute", metrics_port=None, state_path=None,
        )
        load_device_profile(config.device_profile)
        load_model_profile(config.model_profile)
        return cls(config=config, engine=engine, state_dir=state_dir)

    def config_for(self, spec: PolicySpec) -> CamelConfig:
        """The policy's config: a ``request_log`` gets one file per policy (``log.camel.jsonl``),
        and with a ``state_dir`` a learning policy gets its own state file (``STATE_DIR/camel.json``)."""
        safe_label = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.label)
        request_log = self.config.request_log
        if request_log is not None:
            stem, ext = os.path.splitext(request_log)
            request_log = f"{stem}.{safe_label}{ext or '.jsonl'}"
        state_path = self.config.state_path
        if self.state_dir is not None and spec.policy not in STATELESS_POLICIES:
            state_path = os.path.join(self.state_dir, f"{safe_label}.json")
        return self.config.replace(
            policy=spec.policy, policy_params=self.params_for(spec), request_log=request_log,
            state_path=state_path,
        )

    def params_for(self, spec: PolicySpec) -> dict[str, Any]:
        """The base config's ``policy_params`` that ``spec``'s policy takes, then the spec's own.

        ``bench sim --config`` runs several policies from one config: each key goes to every
        policy that has a parameter of that name (``epsilon: 0.0`` to ``epsilon``, ``prior_mean``
        to ``camel`` and ``ts``); :func:`check_specs` refuses a key no listed policy takes.
        """
        from camel_vllm.policies.registry import policy_param_names

        base = dict(self.config.policy_params)
        taken = policy_param_names(spec.policy, {**base, **spec.policy_params})
        return {**{k: v for k, v in base.items() if k in taken}, **spec.policy_params}


def board_serving(device_profile: str, *, model_profile: str | None = None, max_num_seqs: int | None = None,
                  max_num_batched_tokens: int | None = None) -> tuple[str | None, EngineConfig]:
    """How a board serves where the caller said nothing: the model profile (``None``: keep the
    base config's) and the engine limits, from the profile's ``serving:`` block, else the
    simulator's defaults (Camel's 28 sequences, vLLM's 2048 tokens). Given values win."""
    from camel_vllm.devices.emulator.profiles import load_device_profile
    from camel_vllm.sim.engine import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS

    serving = load_device_profile(device_profile).serving
    model = model_profile or (serving.model_profile if serving else None)
    seqs = max_num_seqs or (serving.max_num_seqs if serving else None) or DEFAULT_MAX_NUM_SEQS
    tokens = (max_num_batched_tokens or (serving.max_num_batched_tokens if serving else None)
              or DEFAULT_MAX_NUM_BATCHED_TOKENS)
    return model, EngineConfig(seqs, tokens)


def check_specs(setup: SimSetup, specs: Sequence[PolicySpec]) -> None:
    """Build every spec's controller once, here, so a bad spec fails before any worker starts.

    The same :func:`camel_vllm.wiring.build.build_controller` call as :func:`run_one`, without the
    state file and request log (loading a state file may move it aside: the run does that).
    Raises :class:`ConfigError`; a static arm outside the arm set names the ``--policies`` item.
    """
    from camel_vllm.policies.registry import policy_param_names
    from camel_vllm.wiring.build import EngineLimits, build_controller

    ran = [s for s in specs if s.policy not in (ORACLE, ORACLE3)]
    params = dict(setup.config.policy_params)
    for key, value in params.items():
        if not any(key in policy_param_names(s.policy, {**params, **s.policy_params}) for s in ran):
            names = ", ".join(s.label for s in ran) or "none"
            raise ConfigError(f"policy_params.{key}", value, f"not a parameter of any policy run here ({names})")
    for spec in ran:
        config = setup.config_for(spec).replace(state_path=None, request_log=None)
        clock = VirtualClock()
        try:
            controller = build_controller(config, EngineLimits(setup.engine.max_num_seqs),
                                          device=emulated_device(config, clock), clock=clock, with_metrics=False)
        except ConfigError as err:
            if spec.policy == "static" and err.key == "policy_params.arm":
                arms = arm_set(setup)
                freqs = ", ".join(f"{f / 1e6:g}" for f in arms.frequencies_hz if f is not None)
                caps = ", ".join(str(b) for b in arms.batch_sizes)
                raise ConfigError("policies", spec.label,
                                  f"no such arm (MHZ one of {freqs}; BATCH one of {caps})") from err
            raise
        controller.close()


def emulated_device(config: CamelConfig, clock: VirtualClock) -> EmulatedDevice:
    """The simulator's device: ``config``'s device and model profiles on virtual time.

    ``time_mode="absolute"``: a step advances ``clock`` by its modelled duration. Seeded with
    ``config.seed`` (the modelled power's noise), so every policy in a run sees the same device.
    """
    from camel_vllm.devices.emulator.device import EmulatedDevice
    from camel_vllm.devices.emulator.profiles import load_device_profile, load_model_profile

    return EmulatedDevice(load_device_profile(config.device_profile), load_model_profile(config.model_profile),
                          clock=clock, seed=config.seed, time_mode="absolute")


def arm_set(setup: SimSetup) -> ArmSet:
    """The arms every policy chooses from (resolved exactly as build_controller does)."""
    from camel_vllm.wiring.build import EngineLimits, resolve_batch_sizes, resolve_frequencies_hz

    device = emulated_device(setup.config, VirtualClock())
    limits = EngineLimits(setup.engine.max_num_seqs)
    return ArmSet.product(resolve_frequencies_hz(setup.config, device), resolve_batch_sizes(setup.config, limits))


def run_one(setup: SimSetup, spec: PolicySpec, trace: Trace,
            on_finish: Callable[[int], None] | None = None) -> SimRun:
    """One policy on the trace, on a fresh emulated device."""
    from camel_vllm.wiring.build import EngineLimits, build_controller

    config = setup.config_for(spec)
    clock = VirtualClock()
    limits = EngineLimits(setup.engine.max_num_seqs, setup.engine.max_num_batched_tokens)
    controller = build_controller(config, limits, device=emulated_device(config, clock),
                                  clock=clock, with_metrics=False)
    state_note = controller.state_store.load_outcome if controller.state_store is not None else None
    try:
        run = SimEngine(controller, clock, trace.requests, setup.engine, on_finish=on_finish,
                        host_seed=setup.config.seed).run()
    finally:
        controller.close()
    return dataclasses.replace(run, state_note=state_note) if state_note else run


def _run_task(task: tuple[SimSetup, PolicySpec, Trace]) -> tuple[str, SimRun]:
    setup, spec, trace = task
    return spec.label, run_one(setup, spec, trace, on_finish=report_progress)


def _static_sweep_task(task: tuple[SimSetup, list[PolicySpec], Trace]) -> list[tuple[str, SimRun]]:
    """Static arms of one frequency, largest cap first, reusing runs the cap cannot change.

    A static run whose running count never exceeded a smaller cap C is exactly the run at
    cap C: admission was never blocked by a cap at or above C, the policy never changes arm,
    and the device draws the same noise per iteration. So it is reused, not re-simulated
    (and its requests are reported done at once, :func:`camel_vllm.bench.pool.report_progress`).
    """
    setup, specs, trace = task
    specs = sorted(specs, key=lambda s: -s.policy_params["arm"][1])
    out: list[tuple[str, SimRun]] = []
    last: SimRun | None = None
    for spec in specs:
        cap = spec.policy_params["arm"][1]
        if last is not None and last.max_running <= cap:
            out.append((spec.label, _as_cap(last, cap)))
            report_progress(len(trace))
        else:
            last = run_one(setup, spec, trace, on_finish=report_progress)
            out.append((spec.label, last))
    return out


def _as_cap(run: SimRun, cap: int) -> SimRun:
    """``run`` (a static run) relabelled as the same frequency at batch cap ``cap``."""
    old = max(range(len(run.pulls)), key=lambda i: run.pulls[i])
    mhz = run.arm_labels[old].split("/")[0]
    new = run.arm_labels.index(f"{mhz}/{cap}")
    pulls = [0] * len(run.pulls)
    pulls[new] = run.pulls[old]
    return dataclasses.replace(run, pulls=pulls, decisions=[(t, new) for t, _ in run.decisions])


class _Progress:
    """Passes reported requests on to ``progress`` and tops up at the end to ``total`` (a request
    that never finished still counts as done once its run has ended), never past it."""

    def __init__(self, progress: Callable[[int], None] | None, total: int) -> None:
        self.progress, self.total, self.passed = progress, total, 0

    def __call__(self, n: int) -> None:
        n = min(n, self.total - self.passed)
        if self.progress is not None and n > 0:
            self.passed += n
            self.progress(n)

    def finish(self) -> None:
        self(self.total - self.passed)


def _results(fn: Callable[[Any], Any], tasks: Sequence[Any], labels: Sequence[str], workers: int,
             progress: _Progress) -> Any:
    """``fn(task)`` for every task: in worker processes, or here with one worker or one task."""
    if workers <= 1 or len(tasks) == 1:
        return local_results(fn, tasks, labels, progress)
    return pool_results(fn, tasks, labels, workers, progress)


def run_static_sweep(setup: SimSetup, specs: Sequence[PolicySpec], trace: Trace, *, workers: int = 2,
                     progress: Callable[[int], None] | None = None) -> dict[str, SimRun]:
    """Every static spec (grouped by frequency, see :func:`_static_sweep_task`);
    ``progress(n)`` as requests are simulated (``len(trace)`` per spec in all)."""
    groups: dict[Any, list[PolicySpec]] = {}
    for spec in specs:
        groups.setdefault(spec.policy_params["arm"][0], []).append(spec)
    tasks = [(setup, g, trace) for g in groups.values()]
    labels = [g[0].label.rsplit(":", 1)[0] + ":*" for _, g, _ in tasks]
    runs: dict[str, SimRun] = {}
    counted = _Progress(progress, len(specs) * len(trace))
    for results in _results(_static_sweep_task, tasks, labels, workers, counted):
        runs.update(results)
    counted.finish()
    return runs


def static_specs(arms: ArmSet) -> list[PolicySpec]:
    return [PolicySpec(f"static:{a.label.replace('/', ':')}", "static",
                       {"arm": ["auto" if a.freq_hz is None else a.freq_hz / 1e6, a.max_batch]}) for a in arms.arms]


def run_many(setup: SimSetup, specs: Sequence[PolicySpec], trace: Trace, *, workers: int = 2,
             progress: Callable[[int], None] | None = None) -> dict[str, SimRun]:
    """Run ``specs`` (no ``oracle``) on ``trace``; ``progress(n)`` as requests are simulated
    (``len(trace)`` per spec in all)."""
    tasks = [(setup, s, trace) for s in specs]
    counted = _Progress(progress, len(specs) * len(trace))
    runs = dict(_results(_run_task, tasks, [s.label for s in specs], workers, counted))
    counted.finish()
    return {s.label: runs[s.label] for s in specs}


def mean_edp_js(run: SimRun) -> float:
    return sum(r.edp_js for r in run.records) / len(run.records) if run.records else float("inf")


def policy_result(run: SimRun, requests_total: int) -> PolicyResult:
    return PolicyResult.from_records(
        run.records, requests_total=requests_total, energy_j=run.energy_j, arm_switches=run.arm_switches,
        arms=dict(zip(run.arm_labels, run.pulls, strict=False)),
    )


#: A policy has settled once, in every later window of this many decisions, at least
#: SETTLE_SHARE of them chose its final arm (the arm chosen most in the last window).
SETTLE_WINDOW = 50
SETTLE_SHARE = 0.8


def settled_after(run: SimRun) -> int | None:
    """Requests finished before the policy settled on its final arm (None: it never did).

    Thompson sampling keeps an occasional exploratory pull, so "settled" allows them: from
    the settling decision on, every window of :data:`SETTLE_WINDOW` decisions gives at least
    :data:`SETTLE_SHARE` of its pulls to the final arm.
    """
    arms = [a for _, a in run.decisions]
    if not arms:
        return None
    tail = arms[-SETTLE_WINDOW:]
    final = max(set(tail), key=tail.count)
    hits = [1 if a == final else 0 for a in arms]
    w = min(SETTLE_WINDOW, len(arms))
    # scan windows from the end; the settle point is the start of the earliest window of
    # an unbroken run of good windows reaching the end
    settle_index = None
    acc = sum(hits[len(arms) - w:])
    for start in range(len(arms) - w, -1, -1):
        if start < len(arms) - w:
            acc += hits[start] - hits[start + w]
        if acc < SETTLE_SHARE * w:
            break
        settle_index = start
    if settle_index is None:
        return None
    t_settle = run.decisions[settle_index][0]
    return sum(1 for r in run.records if r.finish_s <= t_settle)


def final_arm(run: SimRun) -> str | None:
    tail = [a for _, a in run.decisions[-SETTLE_WINDOW:]]
    return run.arm_labels[max(set(tail), key=tail.count)] if tail else None


@dataclass
class BenchOutput:
    """The JSON result plus the raw runs the plots need."""

    result: BenchResult
    runs: dict[str, SimRun]
    static_runs: dict[str, SimRun]
    arms: ArmSet


def bench(setup: SimSetup, specs: Sequence[PolicySpec], trace: Trace, *, workers: int = 2,
          progress: Callable[[int], None] | None = None, trace_label: str | None = None) -> BenchOutput:
    """Run every spec on ``trace`` (statics for ``oracle`` included) and build the result."""
    arms = arm_set(setup)
    want_oracle = any(s.policy == ORACLE for s in specs)
    to_run = [s for s in specs if s.policy != ORACLE]
    statics = static_specs(arms) if want_oracle else []
    runs = run_many(setup, to_run, trace, workers=workers, progress=progress) if to_run else {}
    static_runs = run_static_sweep(setup, statics, trace, workers=workers, progress=progress) if statics else {}
    details: dict[str, dict[str, Any]] = {}
    policies: dict[str, PolicyResult] = {}
    n = len(trace)
    for spec in specs:
        if spec.policy == ORACLE:
            best = min(static_runs, key=lambda k: mean_edp_js(static_runs[k]))
            run = static_runs[best]
            runs[ORACLE] = run
            details[ORACLE] = {
                "arm": run.arm_labels[max(range(len(run.pulls)), key=lambda i: run.pulls[i])],
                "how": f"best of {len(static_runs)} static arms by mean EDP on this trace (hindsight)",
                "mean_edp_js_by_arm": {k.split(":", 1)[1].replace(":", "/"): mean_edp_js(r)
                                       for k, r in static_runs.items()},
            }
        run = runs[spec.label]
        policies[spec.label] = policy_result(run, n)
        details.setdefault(spec.label, {}).update({
            "total_edp_js": sum(r.edp_js for r in run.records),
            "sim_duration_s": run.end_s,
            "iterations": run.iterations,
            "settled_after_requests": settled_after(run),
            "final_arm": final_arm(run),
        })
    if BASELINE in runs:
        for spec in specs:
            if spec.label != BASELINE:
                paired = paired_edp_difference(runs[spec.label].records, runs[BASELINE].records, BASELINE)
                if paired is not None:
                    details[spec.label][f"edp_vs_{BASELINE}"] = dataclasses.asdict(paired)
    cfg = setup.config
    result = BenchResult(
        trace=trace_label or trace.name, device=cfg.device_profile, model=cfg.model_profile, requests=n,
        emulated=True, policies=policies, mode="sim",
        notes=list(trace.notes) + [
            "simulated: discrete-event model of vLLM continuous batching "
            f"(max_num_seqs {setup.engine.max_num_seqs}, max_num_batched_tokens {setup.engine.max_num_batched_tokens}, "
            "chunked prefill, FCFS, no preemption) on the emulated device; every energy figure is emulated",
            f"seed {cfg.seed}, epoch_iterations {cfg.epoch_iterations}, contextual {cfg.contextual}, cost {cfg.cost}",
        ] + [f"{spec.label}: {runs[spec.label].state_note}" for spec in to_run if runs[spec.label].state_note],
        details=details,
    )
    return BenchOutput(result=result, runs=runs, static_runs=static_runs, arms=arms)
