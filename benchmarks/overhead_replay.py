"""Overhead, measurement 4: the iterations a camel server logged, replayed through a 49-arm
``camel``-policy controller, each iteration timed (wall and thread CPU).

Run as a script it replays one iteration log (``CAMEL_VLLM_ITERATION_LOG``) and prints the
timings as JSON: ``benchmarks/overhead.py`` runs it so in a fresh interpreter.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from camel_vllm.testing.vllm_server import read_iteration_log

#: The 7 x 7 arm grid of the Camel paper on the AGX Orin 32GB (arXiv 2508.09173).
FREQUENCIES_MHZ = (306, 408, 510, 612, 714, 816, 930.75)
BATCH_SIZES = (4, 8, 12, 16, 20, 24, 28)


def percentile_us(values_ns: Sequence[int], q: float) -> float:
    ordered = sorted(values_ns)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[index] / 1e3


def summary_us(values_ns: Sequence[int]) -> dict[str, float]:
    return {
        "p50_us": percentile_us(values_ns, 50),
        "p99_us": percentile_us(values_ns, 99),
        "max_us": max(values_ns) / 1e3 if values_ns else float("nan"),
        "mean_us": statistics.fmean(values_ns) / 1e3 if values_ns else float("nan"),
        "iterations": len(values_ns),
    }


def replay_controller(rows: list[dict[str, Any]], device_kind: str, seed: int = 0, *,
                      frequencies_mhz: Sequence[float] = FREQUENCIES_MHZ, batch_sizes: Sequence[int] = BATCH_SIZES,
                      device_profile: str = "orin-agx-32gb", model_profile: str = "llama-3.2-1b",
                      iteration_s: float = 0.01) -> dict[str, Any]:
    """Replay recorded iterations through a ``camel``-policy controller over ``frequencies_mhz`` x
    ``batch_sizes`` (default: Camel's 7 x 7 grid on the Orin, 91 arms with camel's prefill-at-top
    arms) and time each one. ``device_kind``: ``free`` (reads cost nothing, a constant 10 W
    energy counter) or ``emulated`` (``device_profile``); every iteration takes ``iteration_s`` on the replay's clock.

    The heap is frozen for the garbage collector first (``gc.freeze()``), as vLLM's engine core
    does after start-up (``vllm.utils.gc_utils.freeze_gc_heap``): otherwise a collection of
    this benchmark's own heap (vLLM imported, results, HTTP clients), which the engine core
    never sees, can land inside a timed iteration.
    """
    import gc

    from camel_vllm.core.config import CamelConfig
    from camel_vllm.core.events import EngineSnapshot, FinishedRequest, IterationWork
    from camel_vllm.testing.fake_device import FakeDevice
    from camel_vllm.core.arms import ArmSet
    from camel_vllm.policies.registry import prefill_clocks_hz
    from camel_vllm.wiring.build import EngineLimits, build_controller

    config = CamelConfig.from_mapping({
        "device": "emulated" if device_kind == "emulated" else "none",
        "policy": "camel",
        "frequencies_mhz": list(frequencies_mhz),
        "batch_sizes": list(batch_sizes),
        "seed": seed,
        "device_profile": device_profile,
        "model_profile": model_profile,
    })
    clock = [0.0]
    # "free": a device whose reads cost nothing (the controller's own time, as on hardware) and
    # whose energy counter runs at a constant 10 W on the replay's clock, so that camel learns
    # and decides as it would on a board (a device without energy keeps it in its warm-up).
    device = None if device_kind == "emulated" else FakeDevice(
        [f * 1e6 for f in frequencies_mhz], kind="free", name="free", energy_source="measured",
        energy_method="constant 10 W", clock=lambda: clock[0], idle_power_w=10.0)
    controller = build_controller(config, EngineLimits(max(batch_sizes)), device=device,
                                  clock=lambda: clock[0], with_metrics=False)
    # Every (clock, cap) pair, plus the pairs whose prefill-heavy steps run at the top clock
    # (camel's default prefill_clock: top; docs/camel-model.md): 49 + 42 = 91 on the Orin's grid.
    freqs_hz = [f * 1e6 for f in frequencies_mhz]
    expected = len(ArmSet.product(freqs_hz, batch_sizes, prefill_clocks_hz(config, freqs_hz)))
    assert len(controller.arms) == expected, (len(controller.arms), expected)
    seen: dict[str, tuple[float, int]] = {}
    timings: list[int] = []
    cpu_timings: list[int] = []
    decision_timings: list[int] = []
    perf = time.perf_counter_ns
    cpu = time.thread_time_ns
    gc.collect()
    gc.freeze()
    try:
        for row in rows:
            now = clock[0]
            tokens = row["tokens"]
            for request_id, count in tokens.items():
                if request_id not in seen:
                    seen[request_id] = (now, count)
                    controller.request_arrived(request_id, now, count)
            work = IterationWork(tokens_by_request=tokens, num_prefill_tokens=row["prefill_tokens"],
                                 num_decode_tokens=row["decode_tokens"], context_tokens=row["context_tokens"])
            snapshot = EngineSnapshot(now_s=now, num_running=row["running_before"], num_waiting=row.get("waiting", 0),
                                      waiting_prompt_tokens=row.get("waiting_prompt_tokens", 0))
            finished = [
                FinishedRequest(request_id=r, arrival_s=seen[r][0], finish_s=now + iteration_s,
                                prompt_tokens=seen[r][1], output_tokens=1)
                for r in row["finished"] if r in seen
            ]
            decisions = controller.decisions
            c0 = cpu()
            t0 = perf()
            controller.begin_iteration(snapshot)
            clock[0] = now + iteration_s
            controller.end_iteration(now + iteration_s, work)
            for request in finished:
                controller.request_finished(request)
            elapsed = perf() - t0
            cpu_timings.append(cpu() - c0)
            timings.append(elapsed)
            if controller.decisions != decisions:
                decision_timings.append(elapsed)
    finally:
        gc.unfreeze()
        controller.close()
    policy = controller.policy
    return {
        "device": device_kind,
        "model_decisions": getattr(policy, "model_decisions", None),  # camel past its warm-up
        "emulated": device_kind == "emulated",
        "arms": len(controller.arms),
        "policy": "camel",
        "per_iteration": summary_us(timings),
        "per_iteration_cpu": summary_us(cpu_timings),
        "decision_iterations": summary_us(decision_timings),
        "decisions": controller.decisions,
        "updates": controller.updates,
    }


#: Replays of the iteration log per device: the figures reported are those of the replay
#: with the median p99 (one replay's p99 varies on a shared machine; docs/vllm-integration.md).
REPLAY_REPEATS = 5


def write_json(path: str | None, result: Any) -> None:
    """Write ``result`` to ``path`` (folders made; nothing without a path) and say so."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {path}")


def replay_repeated(rows: list[dict[str, Any]], device_kind: str, **grid: Any) -> dict[str, Any]:
    """:func:`replay_controller` REPLAY_REPEATS times (fresh controller, same seed; ``grid``: its
    keyword arguments); the run with the median wall p99, plus every run's p99."""
    results = [replay_controller(rows, device_kind, **grid) for _ in range(REPLAY_REPEATS)]
    results.sort(key=lambda r: r["per_iteration"]["p99_us"])
    median = dict(results[len(results) // 2])
    median["replays"] = REPLAY_REPEATS
    median["p99_us_all_replays"] = [r["per_iteration"]["p99_us"] for r in results]
    return median


def replay_in_fresh_interpreter(iteration_log: Path) -> list[dict[str, Any]]:
    """:func:`replay_controller` for both devices in a new Python process.

    The benchmark's own process has imported vLLM and torch and driven the servers, noise
    that belongs to the benchmark, not to the controller (docs/vllm-integration.md has the
    figures). The engine-realistic figure is the in-engine one (the iteration log's
    ``begin_ns``/``end_ns``)."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, str(iteration_log)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: overhead_replay.py ITERATIONS.jsonl", file=sys.stderr)
        return 2
    rows = read_iteration_log(args[0])
    print(json.dumps([replay_repeated(rows, "free"), replay_repeated(rows, "emulated")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
