"""What camel-vllm costs vLLM: controller time per iteration and throughput vs stock vLLM.

One run, one trace (the first ``--requests`` rows of the Azure conversation trace, prompts
and outputs clipped to the model), four measurements:

1. **Scheduler CPU per step, in process** (here): vLLM's ``Scheduler`` and ``CamelScheduler``
   holding the default arm (device ``none`` and emulated), built with no engine
   (:mod:`camel_vllm.testing.in_process`), the same steps for each; thread CPU of
   ``schedule`` + ``update_from_output`` per step.
2. **Throughput, stock vs camel, interleaved** (``overhead_throughput.py``): stock vLLM, a
   second stock server (the A/A control; ``--no-control`` leaves it out) and one
   ``--scheduler camel`` server per device of ``--devices`` holding the default arm, as
   deployed (no iteration log), all up together, ``--rounds`` rounds of one pass per server;
   the figure checked is the median of the per-round paired ratios camel/stock.
3. **Controller in the engine** (here): wall and thread-CPU time per iteration from the
   iteration log of one more camel server per device, which logs (``CAMEL_VLLM_ITERATION_LOG``)
   and is not timed.
4. **Controller replay, 91 arms** (``overhead_replay.py``): the iterations of (2) replayed
   through a ``camel``-policy controller over 7 frequencies x 7 batch caps (and the 6 x 7 whose
   prefill steps run at the top clock), in a fresh
   interpreter, with a zero-cost device and with the emulated Orin.

Targets: controller p50 <= 20 us, p99 <= 200 us per iteration; camel throughput >= 0.98 x
stock. Design and results: docs/vllm-integration.md ("Overhead"). Run (holds the machine's
vLLM lock for the whole run, ~10 min)::

    python benchmarks/overhead.py --model models/tiny --json benchmarks/results/overhead.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from camel_vllm.testing.in_process import in_process_scheduler, scheduler_pass_cpu_ns
from camel_vllm.testing.vllm_server import TraceRequest, machine_lock, read_iteration_log, trace_requests

# benchmarks/, beside this file
from overhead_replay import replay_in_fresh_interpreter, replay_repeated, summary_us, write_json
from overhead_throughput import SETTLE_S, ServerSpec, measure_interleaved, paired_ratios

REPO = Path(__file__).resolve().parent.parent


def scheduler_cpu_in_process(model: str, requests: Sequence[TraceRequest], max_num_seqs: int, passes: int,
                             kinds: Sequence[str] = ("stock", "camel-none", "camel-emulated")) -> dict[str, Any]:
    """Scheduler CPU per step, stock vs camel, in this process: what camel adds to a step.

    Immune to what makes the throughput comparison noisy (HTTP arrivals, the worker, other
    processes): one thread, thread CPU time, the same steps for every kind (checked). Passes
    alternate between the kinds; the best pass of each is kept (interference only adds).
    No iteration log (its env variable is cleared here); no prefix caching.
    """
    saved = os.environ.pop("CAMEL_VLLM_ITERATION_LOG", None)
    try:
        schedulers = {kind: in_process_scheduler(kind, model, max_num_seqs) for kind in kinds}
    finally:
        if saved is not None:
            os.environ["CAMEL_VLLM_ITERATION_LOG"] = saved
    per_step_us: dict[str, list[float]] = {kind: [] for kind in kinds}
    steps_of: dict[str, int] = {}
    # As vLLM's engine core does after start-up (vllm.utils.gc_utils.freeze_gc_heap): the
    # start-up heap (here: three schedulers' KV block pools) is left out of collections.
    gc.collect()
    gc.freeze()
    try:
        for index in range(passes + 1):  # pass 0 warms up
            for kind, scheduler in schedulers.items():
                steps, spent_ns = scheduler_pass_cpu_ns(scheduler, requests, f"{index}")
                if steps_of.setdefault(kind, steps) != steps:
                    raise RuntimeError(f"{kind}: {steps} steps in pass {index}, {steps_of[kind]} before")
                if index:
                    per_step_us[kind].append(spent_ns / steps / 1e3)
    finally:
        gc.unfreeze()
        for scheduler in schedulers.values():
            scheduler.shutdown()
    if len(set(steps_of.values())) != 1:
        raise RuntimeError(f"the schedulers took different numbers of steps: {steps_of}")
    best = {kind: min(values) for kind, values in per_step_us.items()}
    stock = per_step_us["stock"]
    return {
        "passes": passes,
        "steps_per_pass": next(iter(steps_of.values())),
        "cpu_us_per_step_passes": per_step_us,
        "cpu_us_per_step_best": best,
        "cpu_us_per_step_median": {kind: statistics.median(values) for kind, values in per_step_us.items()},
        "camel_adds_us_per_step_best": {kind: best[kind] - best["stock"] for kind in kinds if kind != "stock"},
        "camel_adds_us_per_step_paired_median": {
            kind: statistics.median(a - b for a, b in zip(per_step_us[kind], stock, strict=False))
            for kind in kinds if kind != "stock"
        },
        "iteration_log": False,
        "prefix_caching": False,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "tiny"), help="model folder (default models/tiny)")
    parser.add_argument("--requests", type=int, default=128, help="trace rows per pass (default 128)")
    parser.add_argument("--skip", type=int, default=0, help="trace rows to skip first")
    parser.add_argument("--rounds", type=int, default=12,
                        help="timed rounds; each runs one pass per server (default 12)")
    parser.add_argument("--settle-s", type=float, default=SETTLE_S,
                        help=f"seconds between passes (default {SETTLE_S}: vLLM's idle busy-poll is 1 s)")
    parser.add_argument("--max-num-seqs", type=int, default=28, help="all servers (default 28 = Camel's largest cap)")
    parser.add_argument("--max-prompt-tokens", type=int, default=512)
    parser.add_argument("--max-output-tokens", type=int, default=64)
    parser.add_argument("--devices", default="emulated,none",
                        help="devices of the camel servers, one server each (default emulated,none: "
                        "the emulated Orin at its top clock, and no device)")
    parser.add_argument("--no-control", dest="control", action="store_false",
                        help="leave out the second stock server (the A/A control that shows the comparison's "
                        "resolution in this run)")
    parser.add_argument("--in-process-passes", type=int, default=20,
                        help="passes per scheduler of the in-process scheduler CPU comparison (default 20)")
    parser.add_argument("--json", dest="json_path", help="write the results here")
    parser.add_argument("--replay-log", metavar="ITERATIONS.jsonl",
                        help="only replay this iteration log (CAMEL_VLLM_ITERATION_LOG) through the 49-arm "
                        "controller and print the timings as JSON")
    args = parser.parse_args(argv)
    if args.replay_log:
        rows = read_iteration_log(args.replay_log)
        print(json.dumps([replay_repeated(rows, "free"), replay_repeated(rows, "emulated")]))
        return 0

    if not os.path.isdir(args.model):
        print(f"overhead: --model {args.model}: no such folder (camel-vllm make-tiny-model {args.model})")
        return 2
    if args.rounds < 1 or args.in_process_passes < 1:
        print(f"overhead: --rounds {args.rounds} / --in-process-passes {args.in_process_passes}: must be >= 1")
        return 2
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    for device in devices:
        if device not in ("emulated", "none"):
            print(f"overhead: --devices {args.devices}: {device!r} must be emulated or none")
            return 2
    requests = trace_requests(args.requests, max_prompt_tokens=args.max_prompt_tokens,
                              max_output_tokens=args.max_output_tokens, skip=args.skip)
    work_dir = Path(tempfile.mkdtemp(prefix="camel-overhead-"))
    common = ["--max-num-seqs", str(args.max_num_seqs)]
    specs = [ServerSpec("stock", common)]
    if args.control:
        specs.append(ServerSpec("stock-control", common))
    logged: list[ServerSpec] = []  # untimed twins that write the iteration log
    for device in devices:
        camel = [*common, "--scheduler", "camel", "--additional-config",
                 json.dumps({"camel": {"device": device, "policy": "default"}})]
        log = work_dir / f"iterations-{device}.jsonl"
        specs.append(ServerSpec(f"camel-default-arm-{device}", camel))
        logged.append(ServerSpec(f"camel-default-arm-{device}-logged", camel, {"CAMEL_VLLM_ITERATION_LOG": str(log)},
                                 log, timed=False))

    print(f"trace: {len(requests)} requests, {sum(r.prompt_tokens for r in requests)} prompt and "
          f"{sum(r.output_tokens for r in requests)} output tokens; model {args.model}; servers "
          f"{', '.join(spec.label for spec in specs)}", flush=True)
    with machine_lock(exclusive=True):  # no other vLLM server on the machine while we measure
        print(f"scheduler CPU per step, in process ({args.in_process_passes} passes each)", flush=True)
        in_process = scheduler_cpu_in_process(args.model, requests, args.max_num_seqs, args.in_process_passes)
        runs = dict(zip((spec.label for spec in specs + logged),
                        measure_interleaved(args.model, specs + logged, requests, args.rounds, args.settle_s,
                                            work_dir), strict=False))
    stock = runs["stock"]

    in_engine: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for device, spec in zip(devices, logged, strict=False):
        assert spec.iteration_log is not None
        device_rows = read_iteration_log(spec.iteration_log)
        rows = rows or device_rows
        in_engine[device] = {
            "policy": "default", "device": device, "emulated": device == "emulated",
            **summary_us([row["begin_ns"] + row["end_ns"] for row in device_rows]),
            "thread_cpu": summary_us([row["begin_cpu_ns"] + row["end_cpu_ns"] for row in device_rows]),
        }
    replays = replay_in_fresh_interpreter(logged[0].iteration_log) if rows else []
    # A step of the served model: its forward time (the iteration log's ``forward_s``) plus
    # stock vLLM's own scheduler CPU; camel's in-process addition is set against it.
    forward_ms = statistics.median(row["forward_s"] for row in rows) * 1e3 if rows else float("nan")
    step_ms = forward_ms + in_process["cpu_us_per_step_median"]["stock"] / 1e3
    in_process["step_ms"] = step_ms
    in_process["forward_ms_median"] = forward_ms
    in_process["camel_adds_fraction_of_step"] = {
        kind: added_us / 1e3 / step_ms for kind, added_us in in_process["camel_adds_us_per_step_paired_median"].items()
    }

    throughput: dict[str, Any] = {"stock": stock.to_json(), "target_ratio": 0.98, "compared": "ratio_paired_median",
                                  "camel_default_arm": {}}
    if args.control:
        throughput["stock_control"] = runs["stock-control"].to_json() | paired_ratios(runs["stock-control"], stock)
    for device in devices:
        run = runs[f"camel-default-arm-{device}"]
        throughput["camel_default_arm"][device] = run.to_json() | {"emulated": device == "emulated"} | paired_ratios(
            run, stock)
    result = {
        "benchmark": "overhead",
        "model": args.model,
        "requests_per_pass": len(requests),
        "rounds": args.rounds,
        "settle_s": args.settle_s,
        "order": "interleaved: one pass per server per round, order rotated each round; all servers up together",
        "max_num_seqs": args.max_num_seqs,
        "iteration_log": "off in the timed camel servers; on in an untimed camel server per device "
                         "(warm-up and one pass) whose log gives the in-engine and replay timings",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m": os.getloadavg()[0]},
        "throughput": throughput,
        "scheduler_cpu_in_process": in_process,
        "controller_in_engine": in_engine,
        "controller_replay_49_arms": replays,
        "targets_us": {"p50": 20.0, "p99": 200.0},
    }
    print(f"throughput over {args.rounds} interleaved rounds (output tok/s): stock best "
          f"{stock.best_output_tok_per_s:.1f}, median {stock.median_output_tok_per_s:.1f}")
    compared = ([("stock control (A/A)", throughput["stock_control"])] if args.control else []) + [
        (f"camel, default arm, device {device}{' (emulated)' if device == 'emulated' else ''}",
         throughput["camel_default_arm"][device]) for device in devices]
    for label, entry in compared:
        print(f"  {label}: best {entry['best_output_tok_per_s']:.1f}, median {entry['median_output_tok_per_s']:.1f}; "
              f"ratio to stock: paired median {entry['ratio_paired_median']:.3f} (target >= 0.98), "
              f"best {entry['ratio_best']:.3f}, medians {entry['ratio_median']:.3f}")
    added = in_process["camel_adds_us_per_step_paired_median"]
    print(f"scheduler CPU per step in process (median of {args.in_process_passes} passes; stock "
          f"{in_process['cpu_us_per_step_median']['stock']:.0f} us): camel adds "
          + ", ".join(f"{added_us:.0f} us (device {kind.split('-', 1)[1]}"
                      f"{' (emulated)' if kind.endswith('emulated') else ''}: "
                      f"{100 * in_process['camel_adds_fraction_of_step'][kind]:.2f}% of a {step_ms:.1f} ms step)"
                      for kind, added_us in added.items()))
    for device, ie in in_engine.items():
        print(f"controller in engine (policy default, device {device}): wall p50 {ie['p50_us']:.1f} us, "
              f"p99 {ie['p99_us']:.1f} us; thread CPU p50 {ie['thread_cpu']['p50_us']:.1f} us, "
              f"p99 {ie['thread_cpu']['p99_us']:.1f} us over {ie['iterations']} iterations")
    for replay in replays:
        per = replay["per_iteration"]
        label = "emulated Orin (emulated)" if replay["emulated"] else "zero-cost device"
        cpu_ = replay["per_iteration_cpu"]
        print(f"controller replay, camel policy, {replay['arms']} arms, {label}: wall p50 {per['p50_us']:.1f} us, "
              f"p99 {per['p99_us']:.1f} us; thread CPU p50 {cpu_['p50_us']:.1f} us, p99 {cpu_['p99_us']:.1f} us; "
              f"decision iterations p50 {replay['decision_iterations']['p50_us']:.1f} us "
              f"(median-p99 replay of {replay['replays']}; p99 of each: "
              f"{', '.join(f'{v:.0f}' for v in replay['p99_us_all_replays'])} us)")
    write_json(args.json_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
