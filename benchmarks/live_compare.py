"""Live comparison (and the project's demo): the default configuration vs camel on real vLLM.

Starts the CPU vLLM engine on the tiny test model twice, back to back, with camel-vllm's
scheduler and the emulated AGX Orin device, and replays the same trace against each:

1. ``default``: ``--scheduler camel`` with ``policy: default`` (always the top clock,
   930.75 MHz, and the largest batch cap): vLLM's own behaviour, measured by the same
   emulated energy meter. Stock vLLM has no energy exporter, so this is the fair baseline;
2. ``camel``: ``--scheduler camel`` with ``policy: camel`` (contextual Thompson sampling),
   warm-started by default from ``--warm-start`` simulated requests: the simulator runs the
   same controller on the requests that FOLLOW the replayed ones in the trace and saves the
   learned posteriors (``state_path``), which the server loads (camel-vllm's persistent
   learning). ``--warm-start 0`` starts camel cold;
3. optionally (``--stock``) truly stock vLLM (its default scheduler): latency only.

Energy and step time are EMULATED: the engine really runs the tiny model on this CPU, and by
default (``--emulation-time absolute``) the scheduler waits out each step's modelled time for
``--model-profile`` (Llama-3.2-1B) on the emulated board at the chosen clock, and the emulator
books modelled power. The live runs then stand for that model on that board, and the same
requests are also run through the simulator (same warm state, same device seed) and printed
beside them: a check that the simulator's figures are what the engine does. ``relative``
stretches the tiny model's real step time by the modelled slowdown instead (the product's
default under vLLM; its figures are not comparable with the simulator's). Servers run under
the machine lock /tmp/camel-vllm.lock and are stopped on exit.

    python benchmarks/live_compare.py --requests 40
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from camel_vllm.cli.deprecated import add_deprecated_alias
from camel_vllm.bench.replay import failures, replay, to_policy_result
from camel_vllm.bench.results import BenchResult, PolicyResult, format_table, reduction_pct
from camel_vllm.sim.engine import EngineConfig
from camel_vllm.sim.host import HostTime, fit_host_time
from camel_vllm.testing.vllm_server import (  # the launchers' lock, health check and SIGTERM stop
    BASE_ARGS, BASE_ENV, Server, free_port, launch_command, machine_lock, stop, wait_healthy,
)
from camel_vllm.traces import load_trace
from camel_vllm.vllm_plugin.scheduler import ITERATION_LOG_ENV

REPO = Path(__file__).resolve().parent.parent
#: The servers' context length (``--max-model-len`` in the launcher's BASE_ARGS).
MAX_MODEL_LEN = int(BASE_ARGS[BASE_ARGS.index("--max-model-len") + 1])
DEFAULT_TRACE = str(files("camel_vllm") / "data" / "traces" / "azure_conv_first2000.csv")


@contextlib.contextmanager
def server(model: str, camel: dict | None, log_dir: str, max_num_seqs: int, iteration_log: str | None = None):
    """A vLLM server (camel scheduler when ``camel`` is given); yields (url, metrics_url).
    ``iteration_log``: where the camel scheduler writes one JSON line per step.

    Launched, health-checked and stopped (SIGTERM, then SIGKILL if it hangs) with the test
    launcher's pieces; the caller holds the machine lock.
    """
    port = free_port()
    extra = ["--max-num-seqs", str(max_num_seqs)]
    metrics_url = None
    if camel is not None:
        mport = free_port()
        extra += ["--scheduler", "camel",
                  "--additional-config", json.dumps({"camel": {**camel, "metrics_port": mport}})]
        metrics_url = f"http://127.0.0.1:{mport}/metrics"
    os.makedirs(log_dir, exist_ok=True)
    log_path = Path(log_dir) / f"server-{port}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(launch_command("camel-vllm", model, extra, port), stdout=log,
                                stderr=subprocess.STDOUT, cwd=str(REPO),
                                env={**os.environ, **BASE_ENV,
                                     **({ITERATION_LOG_ENV: iteration_log} if iteration_log else {})},
                                start_new_session=True)
    running = Server(url=f"http://127.0.0.1:{port}", port=port, log_path=log_path, process=proc)
    try:
        wait_healthy(running)
        yield running.url, metrics_url
    finally:
        stop(proc)


def warm_start(args, state_path: str) -> str:
    """Simulate camel on the ``--warm-start`` requests after the replayed ones; save its state."""
    from camel_vllm.bench.sim import PolicySpec, SimSetup, run_one
    from camel_vllm.traces import transforms

    full = load_trace(args.trace, target_rps=args.target_rps, max_context_tokens=MAX_MODEL_LEN - 16,
                      max_output_tokens=args.max_output)
    train = transforms.first(transforms.skip(full, args.requests), args.warm_start)
    setup = SimSetup.make(device_profile=args.device_profile, model_profile=args.model_profile, seed=args.seed,
                          engine=EngineConfig(max_num_seqs=args.max_num_seqs))
    setup = dataclasses.replace(setup, config=setup.config.replace(state_path=state_path))
    run = run_one(setup, PolicySpec("camel", "camel"), train)
    return (f"camel warm-started from {len(run.records)} simulated requests (trace requests "
            f"#{args.requests} to #{args.requests + len(train) - 1}, not the replayed ones)")


def simulate_same_requests(args, trace, state_path: str | None,
                           host: HostTime = HostTime()) -> dict[str, dict[str, float]]:
    """The replayed requests through the simulator: default, and camel from the same warm state;
    ``host``: the live engine's own time per step (measured from the default run)."""
    from camel_vllm.bench.sim import PolicySpec, SimSetup, mean_edp_js, run_one

    setup = SimSetup.make(device_profile=args.device_profile, model_profile=args.model_profile, seed=args.seed,
                          engine=EngineConfig(max_num_seqs=args.max_num_seqs, host=host))
    out: dict[str, dict[str, float]] = {}
    for name, state in (("default", None), ("camel", state_path)):
        if state:  # a copy per call: the run saves what it learns into its state file
            shutil.copyfile(state, state + ".run")
            state += ".run"
        run_setup = dataclasses.replace(setup, config=setup.config.replace(state_path=state)) if state else setup
        run = run_one(run_setup, PolicySpec(name, name), trace)
        latencies = [r.latency_s for r in run.records]
        out[name] = {"energy_j": run.energy_j, "mean_latency_s": sum(latencies) / max(1, len(latencies)),
                     "mean_edp_js": mean_edp_js(run)}
    return out


def run_compare(args) -> BenchResult:
    trace = load_trace(args.trace, requests=args.requests, target_rps=args.target_rps,
                       max_context_tokens=MAX_MODEL_LEN - 16, max_output_tokens=args.max_output)
    base = {"device": "emulated", "device_profile": args.device_profile, "model_profile": args.model_profile,
            "seed": args.seed, "emulation_time": args.emulation_time}
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="camel-live-")
    os.makedirs(log_dir, exist_ok=True)
    camel_cfg = {**base, "policy": "camel"}
    warm_note = "camel started cold (no learned state)"
    if args.warm_start > 0:
        state_path = os.path.join(log_dir, "camel-state.json")
        if os.path.exists(state_path):
            os.remove(state_path)
        warm_note = warm_start(args, state_path)
        camel_cfg["state_path"] = state_path
        print(f"[camel] {warm_note}", flush=True)
    sim_state = None
    if args.emulation_time == "absolute" and args.warm_start > 0:
        sim_state = os.path.join(log_dir, "camel-state.sim.json")  # the live run updates state_path
        shutil.copyfile(camel_cfg["state_path"], sim_state)
    runs: list[tuple[str, dict | None]] = [("default", {**base, "policy": "default"}), ("camel", camel_cfg)]
    if args.stock:
        runs.append(("stock-vllm", None))
    policies: dict[str, PolicyResult] = {}
    details: dict[str, dict] = {}
    with machine_lock():
        for name, camel in runs:
            print(f"[{name}] starting vLLM ({'camel scheduler, policy ' + camel['policy'] if camel else 'stock'})",
                  flush=True)
            iteration_log = os.path.join(log_dir, f"iterations-{name}.jsonl") if camel else None
            if iteration_log and os.path.exists(iteration_log):
                os.remove(iteration_log)
            with server(args.model, camel, log_dir, args.max_num_seqs, iteration_log) as (url, metrics_url):
                run = replay(trace, url, metrics_url=metrics_url, request_timeout_s=args.timeout_s)
            policies[name] = to_policy_result(trace, run)
            details[name] = {"wall_s": run.wall_s, "failures": dict(failures(run)),
                             "energy_source": run.after.energy_source if run.after else None,
                             "camel_config": camel}
            print(f"[{name}] {policies[name].requests_completed}/{len(trace)} completed in {run.wall_s:.1f} s",
                  flush=True)
    if args.emulation_time == "absolute":
        # The engine's own time per step, measured on the default run only: camel's run is predicted.
        host = fit_host_time(os.path.join(log_dir, "iterations-default.jsonl"))
        print(f"[simulator] {host.describe()} (measured on the default run)", flush=True)
        details["simulator"] = simulate_same_requests(args, trace, sim_state, host)
        details["simulator"]["host_time"] = dataclasses.asdict(host)
        details["simulator_without_host_time"] = simulate_same_requests(args, trace, sim_state)
    time_note = ("absolute time: each step waits out the modelled step of the model profile on the board"
                 if args.emulation_time == "absolute"
                 else "relative time: real step time stretched to the chosen clock")
    return BenchResult(
        trace=trace.name, device=f"emulated {args.device_profile}",
        model=f"{args.model} (modelled as {args.model_profile})",
        requests=len(trace), emulated=True, policies=policies, mode="replay",
        notes=list(trace.notes) + [
            f"live vLLM (CPU) on the tiny model; energy EMULATED ({time_note}; modelled power); 'default' = "
            "camel scheduler with policy default (930.75 MHz, largest batch); stock-vllm (if run) has no energy meter",
            warm_note,
            f"server logs in {log_dir}",
        ],
        details=details,
    )


def _change(value: float, baseline: float) -> str:
    return f"{-reduction_pct(value, baseline):+.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=DEFAULT_TRACE, help="trace file (default: shipped Azure conv excerpt)")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--target-rps", type=float, default=1.0)
    parser.add_argument("--max-output", type=int, default=64, help="clip output tokens (CPU time)")
    parser.add_argument("--model", default=str(REPO / "models" / "tiny"), help="model folder for vLLM")
    parser.add_argument("--model-profile", default="llama-3.2-1b", help="model the emulator models")
    parser.add_argument("--device-profile", default="orin-agx-32gb", help="emulated board")
    add_deprecated_alias(parser, "--device", "--device-profile")
    parser.add_argument("--max-num-seqs", type=int, default=28)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--emulation-time", choices=("relative", "absolute"), default="absolute",
                        help="emulated step time: the real step stretched to the clock (relative), or the "
                             "modelled step of --model-profile on the board, waited out (absolute)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per-request timeout")
    parser.add_argument("--warm-start", type=int, default=1000,
                        help="simulated requests camel learns from before the live run (0: cold)")
    parser.add_argument("--stock", action="store_true", help="also run stock vLLM (latency only)")
    parser.add_argument("--json", default=None, help="write the result JSON here")
    parser.add_argument("--log-dir", default=None)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.model):
        print(f"live_compare: model folder {args.model} not found (make it: camel-vllm make-tiny-model)",
              file=sys.stderr)
        return 2
    result = run_compare(args)
    if args.json:
        result.write(args.json)
    print()
    print(format_table(result))
    d, c = result.policies["default"], result.policies["camel"]
    print(f"\ncamel vs default (EMULATED energy; negative = camel lower): "
          f"energy {_change(c.energy_j, d.energy_j)}, mean latency {_change(c.mean_latency_s, d.mean_latency_s)} "
          f"({c.mean_latency_s:.3f} s vs {d.mean_latency_s:.3f} s), "
          f"mean EDP {_change(c.mean_edp_js, d.mean_edp_js)} ({c.mean_edp_js:.4g} vs {d.mean_edp_js:.4g} J*s)")
    sim = result.details.get("simulator")
    if sim:
        sd, sc = sim["default"], sim["camel"]
        print(f"simulator on the same requests (EMULATED): default {sd['energy_j']:.1f} J, "
              f"{sd['mean_latency_s']:.3f} s, "
              f"EDP {sd['mean_edp_js']:.4g} J*s; camel {sc['energy_j']:.1f} J, {sc['mean_latency_s']:.3f} s, "
              f"EDP {sc['mean_edp_js']:.4g} J*s ({_change(sc['mean_edp_js'], sd['mean_edp_js'])} vs default)")
        live_pct = -reduction_pct(c.mean_edp_js, d.mean_edp_js)
        sim_pct = -reduction_pct(sc["mean_edp_js"], sd["mean_edp_js"])
        print(f"camel vs default, live {live_pct:+.1f}% and simulated {sim_pct:+.1f}%: {abs(live_pct - sim_pct):.1f} "
              "points apart (EMULATED)")
    incomplete = {k: p.requests_total - p.requests_completed for k, p in result.policies.items()
                  if p.requests_completed < p.requests_total}
    if incomplete:
        print(f"INCOMPLETE: {incomplete}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
