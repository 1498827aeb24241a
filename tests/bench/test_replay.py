"""The replay client against a small local streaming server (aiohttp), no vLLM needed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from aiohttp import web

from camel_vllm.bench.replay import parse_metrics, replay_async, to_policy_result
from camel_vllm.bench.results import BenchResult
from camel_vllm.cli import main as cli_main
from camel_vllm.testing.vllm_server import free_port
from camel_vllm.traces.base import Trace, TraceRequest

METRICS_BEFORE = """# TYPE camel_energy_joules counter
camel_energy_joules_total{source="emulated"} 100.0
# TYPE camel_request_edp_joule_seconds histogram
camel_request_edp_joule_seconds_bucket{le="+Inf",source="emulated"} 2.0
camel_request_edp_joule_seconds_sum{source="emulated"} 4.0
camel_request_edp_joule_seconds_count{source="emulated"} 2.0
# TYPE camel_arm_pulls counter
camel_arm_pulls_total{context="0",freq_mhz="612",max_batch="8"} 3.0
"""


def _metrics_after(n: int) -> str:
    return METRICS_BEFORE.replace("100.0", "160.0").replace("_sum{source=\"emulated\"} 4.0",
                                                            f"_sum{{source=\"emulated\"}} {4.0 + 1.5 * n}") \
        .replace('_count{source="emulated"} 2.0', f'_count{{source="emulated"}} {2.0 + n}') \
        .replace("} 3.0", "} 5.0")


class FakeServer:
    """Streams ``max_tokens`` chunks like vLLM's /v1/completions; request 'slow' never answers.

    ``max_model_len``: what /v1/models reports (vLLM's ModelCard field; ``None``: left out),
    and enforced as vLLM does: prompt + max_tokens above it is HTTP 400.
    """

    def __init__(self, max_model_len: int | None = None, metrics_text: str | None = None) -> None:
        self.bodies: list[dict] = []
        self.served = 0
        self.max_model_len = max_model_len
        self.metrics_text = metrics_text  # what /metrics answers (None: camel's series)

    async def models(self, request):
        card = {"id": "tiny"} if self.max_model_len is None else {"id": "tiny", "max_model_len": self.max_model_len}
        return web.json_response({"data": [card]})

    async def metrics(self, request):
        if self.metrics_text is not None:
            return web.Response(text=self.metrics_text)
        return web.Response(text=METRICS_BEFORE if self.served == 0 else _metrics_after(self.served))

    async def completions(self, request):
        body = await request.json()
        self.bodies.append(body)
        if self.max_model_len is not None and len(body["prompt"]) + body["max_tokens"] > self.max_model_len:
            return web.json_response({"error": {"message": "maximum context length"}}, status=400)
        if body["max_tokens"] == 999:
            await asyncio.sleep(2.0)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(body["max_tokens"]):
            await asyncio.sleep(0.002)
            await resp.write(b"data: " + json.dumps({"choices": [{"text": " x"}]}).encode() + b"\n\n")
        usage = {"choices": [], "usage": {"completion_tokens": body["max_tokens"]}}
        await resp.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
        self.served += 1
        return resp


async def _start(fake: FakeServer, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve ``fake`` on ``port`` (0: a free one); returns the runner (to clean up) and the port."""
    app = web.Application()
    app.router.add_get("/v1/models", fake.models)
    app.router.add_get("/metrics", fake.metrics)
    app.router.add_post("/v1/completions", fake.completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def _serve_and_replay(trace, **kw):
    fake = FakeServer()
    runner, port = await _start(fake)
    try:
        run = await replay_async(trace, f"http://127.0.0.1:{port}", metrics_url=f"http://127.0.0.1:{port}/metrics",
                                 **kw)
    finally:
        await runner.cleanup()
    return fake, run


def test_replay_streams_measures_and_reads_energy():
    reqs = tuple(TraceRequest(str(i), 0.05 * i, 10 + i, 3 + i) for i in range(5))
    fake, run = asyncio.run(_serve_and_replay(Trace("t", reqs)))
    assert all(r.ok for r in run.records) and len(run.records) == 5
    assert [b["max_tokens"] for b in sorted(fake.bodies, key=lambda b: b["max_tokens"])] == [3, 4, 5, 6, 7]
    assert all(b["ignore_eos"] and b["stream"] and b["model"] == "tiny" for b in fake.bodies)
    assert sorted(len(b["prompt"]) for b in fake.bodies) == [10, 11, 12, 13, 14]  # exact token-id prompts
    assert fake.bodies[0]["prompt"] != fake.bodies[1]["prompt"]
    assert run.output_tokens == {str(i): 3 + i for i in range(5)}
    for rec, req in zip(run.records, reqs, strict=False):
        assert rec.arrival_s >= req.arrival_s - 0.01  # sent at its timestamp, not before
        assert 0 < rec.ttft_s < rec.latency_s
    assert run.energy_j == pytest.approx(60.0)
    assert run.mean_edp_js == pytest.approx(1.5)
    assert run.arm_pulls == {"612/8": 2}
    result = to_policy_result(Trace("t", reqs), run)
    assert result.requests_completed == 5 and result.mean_edp_js == pytest.approx(1.5)


def test_a_hung_request_is_reported_failed_within_the_timeout():
    reqs = (TraceRequest("0", 0.0, 5, 2), TraceRequest("1", 0.0, 5, 999))
    _, run = asyncio.run(_serve_and_replay(Trace("t", reqs), request_timeout_s=0.5))
    by_id = {r.request_id: r for r in run.records}
    assert by_id["0"].ok and not by_id["1"].ok
    assert "timed out" in by_id["1"].error
    res = to_policy_result(Trace("t", reqs), run)
    assert res.requests_total == 2 and res.requests_completed == 1


def test_parse_metrics_absent_series_is_none():
    r = parse_metrics("# TYPE x counter\nx_total 1.0\n")
    assert r.energy_j is None and r.edp_count is None


def test_json_schema_round_trip(tmp_path):
    reqs = tuple(TraceRequest(str(i), 0.02 * i, 4, 2) for i in range(3))
    _, run = asyncio.run(_serve_and_replay(Trace("t", reqs)))
    res = BenchResult(trace="t", device="d", model="m", requests=3, emulated=True,
                      policies={"camel": to_policy_result(Trace("t", reqs), run)}, mode="replay")
    path = tmp_path / "r.json"
    res.write(str(path))
    data = json.loads(path.read_text())
    assert set(data["policies"]["camel"]) == {
        "requests_total", "requests_completed", "energy_j", "mean_latency_s", "p50_latency_s", "p99_latency_s",
        "mean_ttft_s", "mean_edp_js", "arm_switches", "arms"}
    assert data["emulated"] is True and data["requests"] == 3
    assert BenchResult.read(str(path)).policies["camel"].requests_completed == 3
    assert not any(isinstance(v, float) and math.isnan(v) for v in data["policies"]["camel"].values())


@contextlib.contextmanager
def _served(fake: FakeServer, *, port: int = 0, start_after_s: float = 0.0):
    """Run ``fake`` on a background event loop (the CLI runs its own); yields the base URL.

    ``start_after_s`` > 0 (with a ``port``): the URL is yielded at once and the server starts
    listening that much later, as a vLLM server started in the background does.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def start():
        await asyncio.sleep(start_after_s)
        state["runner"], state["port"] = await _start(fake, port)
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    if start_after_s == 0:
        assert ready.wait(10)
    else:
        state["port"] = port
    try:
        yield f"http://127.0.0.1:{state['port']}"
    finally:
        assert ready.wait(10)
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _timed_trace(tmp_path, rows) -> str:
    """A timed_trace JSONL of (prompt tokens, output tokens) rows, 10 ms apart."""
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": i * 0.01, "input_length": p, "output_length": o}) + "\n"
                             for i, (p, o) in enumerate(rows)))
    return str(trace)


def test_bench_replay_cli_writes_the_shared_json(tmp_path):
    fake = FakeServer()
    trace = _timed_trace(tmp_path, [(5, 2)] * 4)
    out = tmp_path / "r.json"
    with _served(fake) as url:
        rc = cli_main(["bench", "replay", "--trace", trace, "--url", url, "--name", "camel", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "replay" and data["emulated"] is True
    assert data["policies"]["camel"]["requests_completed"] == 4
    assert data["policies"]["camel"]["energy_j"] == pytest.approx(60.0)


def test_bench_replay_clips_to_the_servers_max_model_len(tmp_path, capsys):
    """The issue's case: prompts longer than the server's context used to fail with HTTP 400."""
    fake = FakeServer(max_model_len=64)
    trace = _timed_trace(tmp_path, [(5, 2), (100, 10), (60, 8), (20, 4)])
    out = tmp_path / "r.json"
    with _served(fake) as url:
        rc = cli_main(["bench", "replay", "--trace", trace, "--url", url, "--name", "camel", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "clipped 2 of 4 requests to a context of 64 tokens" in captured.out
    assert f"max_model_len of tiny from {url}/v1/models" in captured.out
    assert sorted((len(b["prompt"]), b["max_tokens"]) for b in fake.bodies) == [(5, 2), (20, 4), (54, 10), (56, 8)]
    data = json.loads(out.read_text())
    assert data["policies"]["camel"]["requests_completed"] == 4
    assert data["details"]["camel"]["context"] == {
        "max_context_tokens": 64, "source": f"max_model_len of tiny from {url}/v1/models",
        "requests_clipped": 2, "requests": 4}


def test_without_the_clip_the_same_server_refuses_the_long_requests(tmp_path):
    """What the clip prevents: the fake enforces max_model_len as vLLM does (HTTP 400)."""
    fake = FakeServer(max_model_len=64)
    reqs = (TraceRequest("0", 0.0, 5, 2), TraceRequest("1", 0.0, 100, 10))

    async def go():
        runner, port = await _start(fake)
        try:
            return await replay_async(Trace("t", reqs), f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    run = asyncio.run(go())
    by_id = {r.request_id: r for r in run.records}
    assert by_id["0"].ok and not by_id["1"].ok and "HTTP 400" in by_id["1"].error


def test_a_smaller_max_context_wins_and_a_server_without_a_limit_is_said(tmp_path, capsys):
    trace = _timed_trace(tmp_path, [(50, 2), (10, 2)])
    with _served(FakeServer(max_model_len=64)) as url:
        rc = cli_main(["bench", "replay", "--trace", trace, "--url", url, "--max-context", "32",
                       "--no-metrics", "--json", str(tmp_path / "a.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "clipped 1 of 2 requests to a context of 32 tokens (prompt + output; --max-context)" in out
    fake = FakeServer(max_model_len=None)
    with _served(fake) as url:
        rc = cli_main(["bench", "replay", "--trace", trace, "--url", url, "--no-metrics", "--json",
                       str(tmp_path / "b.json")])
    assert rc == 0
    assert "reports no max_model_len for tiny: requests are not clipped" in capsys.readouterr().out
    assert sorted(len(b["prompt"]) for b in fake.bodies) == [10, 50]


def _dead_url() -> str:
    """A local URL nothing listens on (a port bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_bench_replay_against_a_dead_url_is_one_line_naming_it(tmp_path):
    """Run as a user would (a subprocess, under a timeout): it waits --ready-timeout-s for the
    server, then one stderr line, no traceback, nothing written."""
    url = _dead_url()
    trace = _timed_trace(tmp_path, [(5, 2)])
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "camel_vllm", "bench", "replay", "--trace", trace, "--url", url,
                           "--ready-timeout-s", "2", "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=60)
    waited_s = time.monotonic() - t0
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"camel-vllm bench replay: --url {url}: no server answered /v1/models within 2 s "
                               f"(last: cannot reach {url}/v1/models: ")
    assert waited_s >= 2.0
    assert not (tmp_path / "r.json").exists()


def test_bench_replay_refuses_a_bad_timeout(tmp_path, capsys):
    rc = cli_main(["bench", "replay", "--trace", _timed_trace(tmp_path, [(5, 2)]), "--url", _dead_url(),
                   "--timeout-s", "nan", "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "camel-vllm bench replay: --timeout-s nan: must be a finite number > 0 (s)"


def test_bench_replay_waits_for_a_server_that_is_still_starting(tmp_path, capsys):
    """The README's case: the server is started in the background and replay runs at once."""
    fake = FakeServer()
    trace = _timed_trace(tmp_path, [(5, 2)] * 3)
    out = tmp_path / "r.json"
    t0 = time.monotonic()
    with _served(fake, port=free_port(), start_after_s=2.0) as url:
        rc = cli_main(["bench", "replay", "--trace", trace, "--url", url, "--ready-timeout-s", "30",
                       "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert time.monotonic() - t0 >= 2.0  # it waited for the server instead of replaying into nothing
    assert captured.out.startswith(f"waiting up to 30 s (--ready-timeout-s) for a server at {url} (cannot reach "
                                   f"{url}/v1/models: ")
    assert json.loads(out.read_text())["policies"]["replay"]["requests_completed"] == 3
    assert len(fake.bodies) == 3


VLLM_ONLY_METRICS = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="tiny"} 0.0
"""


def test_a_server_without_camel_metrics_is_said_and_its_columns_left_out(tmp_path, capsys):
    fake = FakeServer(metrics_text=VLLM_ONLY_METRICS)
    trace = _timed_trace(tmp_path, [(5, 2)] * 3)
    out = tmp_path / "r.json"
    with _served(fake) as url:
        rc = cli_main(["bench", "replay", "--trace", trace, "--url", url, "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    notes = [line for line in captured.out.splitlines() if line.startswith("no camel metrics")]
    assert notes == [f"no camel metrics at {url}/metrics (no camel_* series there): energy, EDP and switches are "
                     "not measured and left out (serve with --scheduler camel and a metrics_port, then pass "
                     "--metrics-url)"]
    header = next(line for line in captured.out.splitlines() if line.startswith("policy"))
    assert "energy_J" not in header and "mean_EDP_Js" not in header and "switches" not in header
    assert "mean_lat_s" in header
    assert "nan" not in captured.out
    data = json.loads(out.read_text())
    policy = data["policies"]["replay"]
    assert policy["requests_completed"] == 3
    assert (policy["energy_j"], policy["mean_edp_js"], policy["arm_switches"], policy["arms"]) == (None,) * 4
    assert data["details"]["replay"]["camel_metrics"] == {"url": f"{url}/metrics", "found": False,
                                                          "why": "no camel_* series there"}
    # with camel's series the same command reports them
    with _served(FakeServer()) as url:
        assert cli_main(["bench", "replay", "--trace", trace, "--url", url, "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "no camel metrics" not in captured.out and "energy_J" in captured.out and "switches" in captured.out
    assert json.loads(out.read_text())["policies"]["replay"]["arm_switches"] == 0


def test_a_metrics_url_that_is_not_prometheus_text_is_one_line_before_replaying(tmp_path, capsys):
    fake = FakeServer()
    trace = _timed_trace(tmp_path, [(5, 2)] * 2)
    with _served(fake) as url:
        rc = cli_main(["bench", "replay", "--trace", trace, "--url", url, "--metrics-url", f"{url}/v1/models",
                       "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == (f"camel-vllm bench replay: --metrics-url: {url}/v1/models is not Prometheus text (it answers "
                   "JSON); camel's series are at a /metrics URL")
    assert fake.bodies == [] and not (tmp_path / "r.json").exists()


def test_output_paths_are_checked_before_replaying_and_missing_folders_made(tmp_path, capsys):
    fake = FakeServer()
    trace = _timed_trace(tmp_path, [(5, 2)] * 2)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with _served(fake) as url:
        for bad, why in ((a_file / "out.json", f"folder {a_file}: is a file, not a folder"),
                         (tmp_path, "is a folder; name the file to write")):
            rc = cli_main(["bench", "replay", "--trace", trace, "--url", url, "--json", str(bad)])
            assert rc == 2
            assert capsys.readouterr().err.strip() == f'camel-vllm bench replay: camel config: --json="{bad}": {why}'
        assert fake.bodies == []  # refused before anything was sent
        made = tmp_path / "new" / "sub" / "out.json"
        assert cli_main(["bench", "replay", "--trace", trace, "--url", url, "--json", str(made)]) == 0
    assert json.loads(made.read_text())["policies"]["replay"]["requests_completed"] == 2


def test_an_output_that_is_the_trace_is_refused(tmp_path, capsys):
    fake = FakeServer()
    trace = _timed_trace(tmp_path, [(5, 2)] * 2)
    before = open(trace).read()
    link = tmp_path / "link.json"
    os.link(trace, link)  # another name for the same file
    with _served(fake) as url:
        for out in (trace, str(link)):
            assert cli_main(["bench", "replay", "--trace", trace, "--url", url, "--json", out]) == 2
            assert capsys.readouterr().err.strip() == (f'camel-vllm bench replay: camel config: --json="{out}": is '
                                                       f"the same file as --trace {trace}; writing it would "
                                                       "overwrite that")
    assert open(trace).read() == before and fake.bodies == []


def test_the_old_device_option_still_labels_the_json_with_a_notice(tmp_path, capsys):
    trace = _timed_trace(tmp_path, [(5, 2)])
    out = tmp_path / "r.json"
    with _served(FakeServer()) as url:
        assert cli_main(["bench", "replay", "--trace", trace, "--url", url, "--device", "orin", "--json",
                         str(out)]) == 0
        assert "camel-vllm bench replay: --device is deprecated, use --device-label" in capsys.readouterr().err
        assert json.loads(out.read_text())["device"] == "orin"
        assert cli_main(["bench", "replay", "--trace", trace, "--url", url, "--device-label", "agx", "--json",
                         str(out)]) == 0
        assert "deprecated" not in capsys.readouterr().err
    assert json.loads(out.read_text())["device"] == "agx"
