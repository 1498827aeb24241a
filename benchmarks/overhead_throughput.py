"""Overhead, measurement 2: throughput of stock vLLM and camel servers, all up at once, in
interleaved rounds of one pass per server (docs/vllm-integration.md says why interleaved)."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from camel_vllm.testing.vllm_server import (  # shared launcher pieces: lock, health, SIGTERM
    BASE_ENV,
    Server,
    TraceRequest,
    free_port,
    launch_command,
    send_all,
    stop,
    wait_healthy,
)

REPO = Path(__file__).resolve().parent.parent

#: Seconds between passes: vLLM's shm readers busy-poll for 1 s after their last message
#: (``busy_loop_s``, vllm/distributed/device_communicators/shm_broadcast.py), so a server
#: that just finished a pass keeps one core busy for up to 1 s.
SETTLE_S = 1.5


@dataclass
class ServerSpec:
    """One server of the comparison: its label, extra vLLM flags and environment.

    ``timed``: the server runs the timed rounds; an untimed one (a camel server writing its
    iteration log, which costs a step ~35 us that production does not pay) runs the warm-up
    pass and one more pass, for the log only.
    """

    label: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    iteration_log: Path | None = None
    timed: bool = True


@dataclass
class ThroughputResult:
    """Throughput of one server, one entry per round (pass ``i`` ran in round ``i``).

    ``idle_cpu_s``: CPU seconds this server's processes used while *other* servers ran their
    passes (should be ~0: idle servers must not steal the cores).
    """

    label: str
    passes_output_tok_per_s: list[float] = field(default_factory=list)
    passes_wall_s: list[float] = field(default_factory=list)
    passes_cpu_s: list[float] = field(default_factory=list)
    idle_cpu_s: list[float] = field(default_factory=list)

    @property
    def median_output_tok_per_s(self) -> float:
        return statistics.median(self.passes_output_tok_per_s)

    @property
    def best_output_tok_per_s(self) -> float:
        return max(self.passes_output_tok_per_s)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "median_output_tok_per_s": self.median_output_tok_per_s,
            "best_output_tok_per_s": self.best_output_tok_per_s,
        }


def paired_ratios(run: ThroughputResult, reference: ThroughputResult) -> dict[str, Any]:
    """``run`` vs ``reference``: per-round ratios, their median, best and median ratios."""
    pairs = [a / b for a, b in zip(run.passes_output_tok_per_s, reference.passes_output_tok_per_s, strict=False)]
    return {
        "paired_ratios": pairs,
        "ratio_paired_median": statistics.median(pairs),
        "ratio_best": run.best_output_tok_per_s / reference.best_output_tok_per_s,
        "ratio_median": run.median_output_tok_per_s / reference.median_output_tok_per_s,
    }


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (API server, engine core, worker)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@contextlib.contextmanager
def running_servers(model: str, specs: Sequence[ServerSpec], log_dir: Path) -> Iterator[list[Server]]:
    """Start every server (one after another); stop all on exit. The caller holds the lock."""
    with contextlib.ExitStack() as stack:
        servers: list[Server] = []
        for spec in specs:
            port = free_port()
            log_path = log_dir / f"server-{spec.label}-{port}.log"
            command = launch_command("camel-vllm", model, spec.args, port)
            log = stack.enter_context(open(log_path, "w", encoding="utf-8"))
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **BASE_ENV, **spec.env},
                cwd=str(REPO), start_new_session=True,
            )
            stack.callback(stop, process)
            server = Server(url=f"http://127.0.0.1:{port}", port=port, log_path=log_path, process=process)
            wait_healthy(server)
            print(f"  {spec.label}: up on port {port}", flush=True)
            servers.append(server)
        yield servers


def measure_interleaved(model: str, specs: Sequence[ServerSpec], requests: Sequence[TraceRequest], rounds: int,
                        settle_s: float, log_dir: Path) -> list[ThroughputResult]:
    """Warm every server up, then ``rounds`` rounds of one pass per timed server, rotating the
    order; an untimed server gets one more pass after the warm-up (its results stay empty)."""
    results = [ThroughputResult(label=spec.label) for spec in specs]
    output_tokens = sum(r.output_tokens for r in requests)
    timed = [i for i, spec in enumerate(specs) if spec.timed]
    with running_servers(model, specs, log_dir) as servers:
        for server, spec in zip(servers, specs, strict=False):
            send_all(server, requests, concurrency=len(requests))  # warm-up pass, not timed
            if not spec.timed:
                send_all(server, requests, concurrency=len(requests))  # for its iteration log only
        for round_index in range(rounds):
            order = [timed[(round_index + k) % len(timed)] for k in range(len(timed))]
            for index in order:
                server, result = servers[index], results[index]
                time.sleep(settle_s)
                cpu_before = [process_tree_cpu_s(s.process.pid) for s in servers]
                t0 = time.perf_counter()
                responses = send_all(server, requests, concurrency=len(requests))
                wall_s = time.perf_counter() - t0
                cpu_after = [process_tree_cpu_s(s.process.pid) for s in servers]
                got = sum(r["usage"]["completion_tokens"] for r in responses)
                if got != output_tokens:
                    raise RuntimeError(f"{result.label}: {got} output tokens, expected {output_tokens}")
                result.passes_wall_s.append(wall_s)
                result.passes_output_tok_per_s.append(output_tokens / wall_s)
                result.passes_cpu_s.append(cpu_after[index] - cpu_before[index])
                for other, other_result in enumerate(results):
                    if other != index and specs[other].timed:
                        other_result.idle_cpu_s.append(cpu_after[other] - cpu_before[other])
                print(f"  round {round_index + 1}/{rounds} {result.label}: {output_tokens / wall_s:8.1f} "
                      f"output tok/s ({wall_s:.2f} s)", flush=True)
    return results
