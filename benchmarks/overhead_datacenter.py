"""What camel costs at datacenter size: the H100 board's arm grid, 256 sequences.

Two measurements, no server (``benchmarks/overhead.py`` measures throughput against live servers):

1. **Controller replay, 161 arms.** The simulator serves the Azure conversation trace on the
   emulated H100 (``h100-sxm``, Llama-3.1-8B, ``--max-num-seqs 256``, 8192 tokens a step) at 0.8
   of its capacity under the default arm; its iterations (up to 256 requests a step) are replayed
   through a ``camel``-policy controller over the board's auto grid (12 clocks x 7 caps, and the 11 x 7
   whose prefill steps run at the top clock: 161 arms), with a
   zero-cost device and with the emulated H100, each iteration timed (wall and thread CPU), as
   ``overhead_replay.py`` does for the Orin's 91.
2. **Scheduler CPU per step in process, sync and async.** vLLM's ``Scheduler`` and
   ``AsyncScheduler`` (async scheduling is vLLM's default on GPUs) against ``CamelScheduler`` with
   the ``camel`` policy on the emulated H100, 256 sequences, the same requests for each, driven as
   an engine core drives them (:func:`camel_vllm.testing.in_process.serve`); thread CPU of
   ``schedule`` + ``update_from_output`` per step, best of ``--passes``.

Targets (as on the Orin): controller p50 <= 20 us, p99 <= 200 us per iteration. Every energy
figure is emulated. Run (~5 min on the 2-core machine)::

    python benchmarks/overhead_datacenter.py --json benchmarks/results/overhead_datacenter.json
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

from overhead_replay import replay_repeated, write_json  # benchmarks/, beside this file

REPO = Path(__file__).resolve().parent.parent
DEVICE_PROFILE = "h100-sxm"
MODEL_PROFILE = "llama-3.1-8b"
MAX_NUM_SEQS = 256
MAX_NUM_BATCHED_TOKENS = 8192
TRACE = str(REPO / "camel_vllm" / "data" / "traces" / "azure_conv_first2000.csv")


def simulated_iterations(requests: int, load: float) -> list[dict[str, Any]]:
    """The iterations the simulator's engine runs for ``requests`` rows of the conversation trace
    at ``load`` x the default arm's capacity on the emulated H100, as iteration-log rows."""
    from camel_vllm.bench.matrix import capacity_rps, cell_trace, saturated
    from camel_vllm.bench.sim import PolicySpec, SimSetup, emulated_device, run_one
    from camel_vllm.sim.engine import EngineConfig, SimEngine, VirtualClock
    from camel_vllm.traces import transforms
    from camel_vllm.wiring.build import EngineLimits, build_controller

    setup = SimSetup.make(device_profile=DEVICE_PROFILE, model_profile=MODEL_PROFILE,
                          engine=EngineConfig(MAX_NUM_SEQS, MAX_NUM_BATCHED_TOKENS))
    trace = cell_trace(TRACE, 0, requests)
    capacity = capacity_rps(run_one(setup, PolicySpec("default", "default"), saturated(trace)))
    trace = transforms.target_rps(trace, load * capacity)
    config = setup.config_for(PolicySpec("default", "default"))
    clock = VirtualClock()
    controller = build_controller(config, EngineLimits(MAX_NUM_SEQS, MAX_NUM_BATCHED_TOKENS),
                                  device=emulated_device(config, clock), clock=clock, with_metrics=False)
    rows: list[dict[str, Any]] = []
    snapshot: list[Any] = [None]
    begin, end, finish = controller.begin_iteration, controller.end_iteration, controller.request_finished

    def begin_recorded(snap: Any) -> Any:
        snapshot[0] = snap
        return begin(snap)

    def end_recorded(now_s: float, work: Any) -> float:
        snap = snapshot[0]
        rows.append({"tokens": dict(work.tokens_by_request), "prefill_tokens": work.num_prefill_tokens,
                     "decode_tokens": work.num_decode_tokens, "context_tokens": work.context_tokens,
                     "running_before": snap.num_running, "waiting": snap.num_waiting,
                     "waiting_prompt_tokens": snap.waiting_prompt_tokens, "finished": []})
        return end(now_s, work)

    def finish_recorded(request: Any) -> Any:
        rows[-1]["finished"].append(request.request_id)
        return finish(request)

    controller.begin_iteration, controller.end_iteration = begin_recorded, end_recorded  # type: ignore[method-assign]
    controller.request_finished = finish_recorded  # type: ignore[method-assign]
    try:
        SimEngine(controller, clock, trace.requests, setup.engine).run()
    finally:
        controller.close()
    return rows


def scheduler_cpu(model: str, requests: int, passes: int) -> dict[str, Any]:
    """Thread CPU per step of stock vs camel schedulers, sync and async, 256 sequences."""
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    from camel_vllm.testing.in_process import build_scheduler, scheduler_pass_cpu_ns
    from camel_vllm.testing.vllm_server import trace_requests
    from camel_vllm.vllm_plugin.scheduler import CamelScheduler

    rows = trace_requests(requests, max_prompt_tokens=512, max_output_tokens=64)
    camel = {"camel": {"device": "emulated", "device_profile": DEVICE_PROFILE, "model_profile": MODEL_PROFILE,
                       "policy": "camel", "seed": 0}}
    out: dict[str, Any] = {}
    for mode, async_scheduling, stock_cls in (("sync", False, Scheduler), ("async", True, AsyncScheduler)):
        per_step: dict[str, list[float]] = {"stock": [], "camel": []}
        steps_of: dict[str, list[int]] = {"stock": [], "camel": []}
        for index in range(passes + 1):  # pass 0 warms up
            for kind, cls, extra in (("stock", stock_cls, {}), ("camel", CamelScheduler, camel)):
                scheduler = build_scheduler(cls, model, extra, max_num_seqs=MAX_NUM_SEQS,
                                            max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS, num_blocks=20_000,
                                            async_scheduling=async_scheduling)
                gc.collect()
                gc.freeze()
                try:
                    steps, spent_ns = scheduler_pass_cpu_ns(scheduler, rows, f"{mode}{index}",
                                                            queue_size=2 if async_scheduling else 1)
                finally:
                    gc.unfreeze()
                    arms = len(scheduler.controller.arms) if kind == "camel" else None
                    scheduler.shutdown()
                if index:
                    per_step[kind].append(spent_ns / steps / 1e3)
                    steps_of[kind].append(steps)
                if arms is not None:
                    out.setdefault("camel_arms", arms)
        best = {kind: min(v) for kind, v in per_step.items()}
        out[mode] = {"steps_per_pass": steps_of, "cpu_us_per_step_best": best,
                     "cpu_us_per_step_median": {k: statistics.median(v) for k, v in per_step.items()},
                     "camel_adds_us_per_step_best": best["camel"] - best["stock"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "tiny"), help="model folder for the in-process "
                                                                             "schedulers (default models/tiny)")
    parser.add_argument("--requests", type=int, default=2000, help="trace rows the simulator serves (default 2000)")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of the default arm's capacity (default 0.8)")
    parser.add_argument("--scheduler-requests", type=int, default=600, help="requests per in-process pass")
    parser.add_argument("--passes", type=int, default=5, help="in-process passes per scheduler (default 5)")
    parser.add_argument("--json", dest="json_path", help="write the results here")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.model):
        print(f"overhead_datacenter: --model {args.model}: no such folder (camel-vllm make-tiny-model {args.model})")
        return 2
    from camel_vllm.devices.emulator.profiles import load_device_profile
    from camel_vllm.wiring.build import auto_frequencies_hz

    rows = simulated_iterations(args.requests, args.load)
    offered_hz = load_device_profile(DEVICE_PROFILE).frequencies_hz
    grid = {"frequencies_mhz": [f / 1e6 for f in auto_frequencies_hz(offered_hz)],
            "batch_sizes": [37, 73, 110, 146, 183, 219, 256], "device_profile": DEVICE_PROFILE,
            "model_profile": MODEL_PROFILE, "iteration_s": 0.02}
    print(f"replaying {len(rows)} simulated iterations (up to {max(len(r['tokens']) for r in rows)} requests a step) "
          f"through a {len(grid['frequencies_mhz'])} x {len(grid['batch_sizes'])}-arm camel controller", flush=True)
    replays = [replay_repeated(rows, kind, **grid) for kind in ("free", "emulated")]
    print("scheduler CPU per step in process (sync and async), 256 sequences", flush=True)
    in_process = scheduler_cpu(args.model, args.scheduler_requests, args.passes)
    result = {"benchmark": "overhead_datacenter", "device_profile": DEVICE_PROFILE, "model_profile": MODEL_PROFILE,
              "max_num_seqs": MAX_NUM_SEQS, "max_num_batched_tokens": MAX_NUM_BATCHED_TOKENS,
              "iterations_replayed": len(rows), "grid": grid, "controller_replay": replays,
              "scheduler_cpu_in_process": in_process, "targets_us": {"p50": 20.0, "p99": 200.0},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}}
    for replay in replays:
        per, cpu_ = replay["per_iteration"], replay["per_iteration_cpu"]
        label = "emulated H100 (emulated)" if replay["emulated"] else "zero-cost device"
        print(f"controller replay, camel, {replay['arms']} arms, {label}: wall p50 {per['p50_us']:.1f} us, "
              f"p99 {per['p99_us']:.1f} us; thread CPU p50 {cpu_['p50_us']:.1f} us, p99 {cpu_['p99_us']:.1f} us; "
              f"{replay['model_decisions']} model decisions (median-p99 replay of {replay['replays']}; p99 of each: "
              f"{', '.join(f'{v:.0f}' for v in replay['p99_us_all_replays'])} us)")
    for mode in ("sync", "async"):
        entry = in_process[mode]
        best = entry["cpu_us_per_step_best"]
        print(f"scheduler CPU per step, {mode}, best of {args.passes}: stock {best['stock']:.0f} us, "
              f"camel ({in_process['camel_arms']} arms, emulated H100) {best['camel']:.0f} us: "
              f"camel adds {entry['camel_adds_us_per_step_best']:.0f} us")
    write_json(args.json_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
