"""Live replay: send a trace to an OpenAI-compatible server at its timestamps and measure.

Each request is a streaming ``POST /v1/completions`` with ``max_tokens`` = the trace's output
tokens and ``ignore_eos`` (a vLLM extension) so output lengths match the trace. The prompt
is a list of token ids (the completions API accepts them), so its length is exact whatever
the tokenizer: ids drawn uniformly from :data:`PROMPT_TOKEN_IDS`, seeded by the request id
and distinct per request, so vLLM's prefix cache does not turn prefills into cache hits
(as vLLM's own ``timed_trace`` does with random tokens). TTFT is the time to the first
streamed chunk carrying text; latency the time to the end of the stream.

Energy comes from camel's Prometheus series (:mod:`camel_vllm.telemetry.metrics.schema`), read before
and after the run: ``camel_energy_joules_total{source}`` (device total, idle included) and
``camel_request_edp_joule_seconds_{sum,count}`` (per-request EDP as the controller attributes
it). Without a metrics URL, energy and EDP are reported as null. Every request ends: it
completes, or it is recorded as failed with its error after at most ``request_timeout_s``.

Before a replay, :func:`wait_for_server` asks the server's ``/v1/models`` which model it serves
and its ``max_model_len`` (vLLM's ``ModelCard``, vllm/entrypoints/serve/engine/protocol.py),
so the trace can be clipped to what the server accepts. A server still starting (connection
refused, HTTP 503) is asked again until a deadline; one that never answers, or answers as no
OpenAI-compatible server does, is a :class:`ServerUnreachable` whose text is one line naming
the URL. :func:`read_metrics_once` reads the metrics URL once before the replay: a page that
is not Prometheus text is a :class:`MetricsUnavailable`; a reading without any ``camel_*``
series (:attr:`MetricsReading.has_camel`) means energy, EDP and arms cannot be measured there,
and the result leaves them out (``None``, JSON null) instead of reporting NaN and 0 switches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Mapping

from camel_vllm.core.errors import CamelError
from camel_vllm.sim.records import RequestRecord
from camel_vllm.traces.base import Trace

logger = logging.getLogger("vllm.camel")

#: Token ids prompts are drawn from: ordinary (non-special) tokens in every vocabulary we
#: serve, the tiny test model's 4,096 included (its specials are 0-3).
PROMPT_TOKEN_IDS = range(1000, 4000)


#: Seconds to wait for ``/v1/models`` before calling the server unreachable.
MODELS_TIMEOUT_S = 10.0


#: Seconds between the tries of :func:`wait_for_server`.
READY_POLL_S = 1.0


class ServerUnreachable(CamelError, RuntimeError):
    """The server did not answer as an OpenAI-compatible server; ``str(err)`` is one line with the URL."""


class ServerNotReady(ServerUnreachable):
    """Nothing answered yet (connection refused or reset, a timeout, HTTP 503): a starting server."""


class MetricsUnavailable(CamelError, RuntimeError):
    """The metrics URL could not be read as Prometheus text; ``str(err)`` is one line with the URL."""


@dataclass(frozen=True)
class ServedModel:
    """A model a server serves: its id and context limit (tokens; ``None``: not reported)."""

    model_id: str
    max_model_len: int | None


def served_model(url: str, model: str | None = None, timeout_s: float = MODELS_TIMEOUT_S) -> ServedModel:
    """The server's model named ``model`` (default: its first) from ``GET URL/v1/models``."""
    models_url = url.rstrip("/") + "/v1/models"
    try:
        with urllib.request.urlopen(models_url, timeout=timeout_s) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as err:
        kind = ServerNotReady if err.code == 503 else ServerUnreachable
        raise kind(f"{models_url} answered HTTP {err.code} ({err.reason})") from err
    except (urllib.error.URLError, OSError, socket.timeout) as err:
        reason = getattr(err, "reason", None) or err
        starting = isinstance(reason, (ConnectionError, socket.timeout, TimeoutError))
        kind = ServerNotReady if starting else ServerUnreachable
        raise kind(f"cannot reach {models_url}: {reason}") from err
    except ValueError as err:
        raise ServerUnreachable(f"{models_url} did not answer JSON (is this an OpenAI-compatible server?)") from err
    cards = data.get("data") if isinstance(data, dict) else None
    if not isinstance(cards, list) or not cards or not all(isinstance(c, dict) and "id" in c for c in cards):
        raise ServerUnreachable(f"{models_url} lists no model")
    if model is None:
        card = cards[0]
    else:
        card = next((c for c in cards if c["id"] == model), None)
        if card is None:
            raise ServerUnreachable(f"{models_url} does not serve {model!r} (it serves: "
                                    f"{', '.join(str(c['id']) for c in cards)})")
    limit = card.get("max_model_len")
    valid = isinstance(limit, int) and not isinstance(limit, bool) and limit > 0
    return ServedModel(str(card["id"]), limit if valid else None)


def wait_for_server(url: str, model: str | None = None, ready_timeout_s: float = 60.0,
                    poll_s: float = READY_POLL_S, on_wait: Callable[[str], None] | None = None) -> ServedModel:
    """:func:`served_model`, asked again every ``poll_s`` while the server is not ready, for up to
    ``ready_timeout_s`` seconds (0: once). Any other failure is raised at once. ``on_wait(why)``
    is called once, when the first try finds the server not ready and there is time to wait."""
    deadline = time.monotonic() + ready_timeout_s
    waited = False
    while True:
        left_s = deadline - time.monotonic()
        try:
            return served_model(url, model, timeout_s=max(0.5, min(MODELS_TIMEOUT_S, left_s)))
        except ServerNotReady as err:
            left_s = deadline - time.monotonic()
            if left_s > 0 and not waited and on_wait is not None:
                on_wait(str(err))
            waited = True
            if left_s <= 0:
                raise ServerUnreachable(f"--url {url}: no server answered /v1/models within {ready_timeout_s:g} s "
                                        f"(last: {err})") from err
            time.sleep(min(poll_s, left_s))


@dataclass(frozen=True)
class MetricsReading:
    """Cumulative camel counters at one instant (``None``: series absent)."""

    energy_j: float | None
    energy_source: str | None
    edp_sum_js: float | None
    edp_count: float | None
    decisions: float | None
    arm_pulls: dict[str, float] = field(default_factory=dict)

    @property
    def has_camel(self) -> bool:
        """Whether any camel series was there (a camel scheduler exporting its metrics)."""
        return any(v is not None for v in (self.energy_j, self.edp_count, self.decisions)) or bool(self.arm_pulls)


@dataclass
class ReplayRun:
    records: list[RequestRecord]
    before: MetricsReading | None
    after: MetricsReading | None
    wall_s: float
    output_tokens: dict[str, int] = field(default_factory=dict)

    @property
    def energy_j(self) -> float | None:
        if not self.before or not self.after or self.before.energy_j is None or self.after.energy_j is None:
            return None
        return self.after.energy_j - self.before.energy_j

    @property
    def mean_edp_js(self) -> float | None:
        b, a = self.before, self.after
        if not b or not a or a.edp_sum_js is None or a.edp_count is None:
            return None
        count = a.edp_count - (b.edp_count or 0.0)
        return (a.edp_sum_js - (b.edp_sum_js or 0.0)) / count if count > 0 else None

    @property
    def arm_pulls(self) -> dict[str, int]:
        b, a = self.before, self.after
        if not a:
            return {}
        return {k: int(round(v - (b.arm_pulls.get(k, 0.0) if b else 0.0))) for k, v in a.arm_pulls.items()
                if v - (b.arm_pulls.get(k, 0.0) if b else 0.0) > 0}

    @property
    def arm_switches(self) -> int | None:
        """Decisions in the run minus one when several arms were used (a lower bound on switches);
        ``None`` without camel metrics."""
        if not self.has_camel:
            return None
        pulls = self.arm_pulls
        return 0 if len(pulls) <= 1 else len(pulls) - 1

    @property
    def has_camel(self) -> bool:
        """Whether camel's series were read after the run."""
        return bool(self.after and self.after.has_camel)


def parse_metrics(text: str) -> MetricsReading:
    """Pull camel's cumulative series out of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    energy = edp_sum = edp_count = decisions = None
    source = None
    pulls: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "camel_energy_joules_total":
                energy = (energy or 0.0) + s.value
                source = s.labels.get("source", source)
            elif s.name == "camel_request_edp_joule_seconds_sum":
                edp_sum = (edp_sum or 0.0) + s.value
            elif s.name == "camel_request_edp_joule_seconds_count":
                edp_count = (edp_count or 0.0) + s.value
            elif s.name == "camel_decisions_total":
                decisions = (decisions or 0.0) + s.value
            elif s.name == "camel_arm_pulls_total" and s.labels.get("context") != "all":
                key = f"{s.labels.get('freq_mhz')}/{s.labels.get('max_batch')}"
                pulls[key] = pulls.get(key, 0.0) + s.value
    return MetricsReading(energy, source, edp_sum, edp_count, decisions, pulls)


def read_metrics_once(url: str, timeout_s: float = MODELS_TIMEOUT_S) -> MetricsReading:
    """One reading of ``url``; :class:`MetricsUnavailable` (one line) if it cannot be read or is
    not Prometheus text (e.g. ``/v1/models``'s JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        raise MetricsUnavailable(f"{url} answered HTTP {err.code} ({err.reason})") from err
    except (urllib.error.URLError, OSError, socket.timeout) as err:
        raise MetricsUnavailable(f"cannot reach {url}: {getattr(err, 'reason', None) or err}") from err
    try:
        return parse_metrics(text)
    except ValueError as err:
        head = text.strip()[:1]
        hint = " (it answers JSON)" if head in ("{", "[") else ""
        raise MetricsUnavailable(f"{url} is not Prometheus text{hint}; camel's series are at a /metrics "
                                 "URL") from err


def build_prompt(prompt_tokens: int, request_id: str) -> list[int]:
    """``prompt_tokens`` token ids, reproducible per request id."""
    import random

    rng = random.Random(f"camel-replay-{request_id}")
    lo, hi = PROMPT_TOKEN_IDS.start, PROMPT_TOKEN_IDS.stop - 1
    return [rng.randint(lo, hi) for _ in range(max(1, prompt_tokens))]


async def _read_metrics(session, url: str | None) -> MetricsReading | None:
    if not url:
        return None
    import aiohttp

    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            resp.raise_for_status()
            return parse_metrics(await resp.text())
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
        logger.warning("camel replay: reading metrics from %s failed: %s", url, err)
        return None


async def _model_name(session, base_url: str) -> str:
    async with session.get(f"{base_url}/v1/models") as resp:
        resp.raise_for_status()
        data = await resp.json()
    return data["data"][0]["id"]


async def _one(session, base_url: str, model: str, req, t0: float, timeout_s: float,
               records: list[RequestRecord], out_tokens: dict[str, int], progress) -> None:
    import aiohttp

    delay = t0 + req.arrival_s - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    sent = time.perf_counter()
    first = None
    chunks = 0
    body = {
        "model": model, "prompt": build_prompt(req.prompt_tokens, req.request_id), "max_tokens": req.output_tokens,
        "min_tokens": req.output_tokens, "ignore_eos": True, "stream": True, "temperature": 0.0,
        "stream_options": {"include_usage": True},
    }
    error = ""
    try:
        async with session.post(f"{base_url}/v1/completions", json=body,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
            else:
                async for raw in resp.content:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    choices = chunk.get("choices") or []
                    if choices and choices[0].get("text"):
                        chunks += 1
                        if first is None:
                            first = time.perf_counter()
                    usage = chunk.get("usage")
                    if usage:
                        out_tokens[req.request_id] = int(usage.get("completion_tokens", 0))
    except asyncio.TimeoutError:
        error = f"timed out after {timeout_s:g} s"
    except (aiohttp.ClientError, json.JSONDecodeError, OSError) as err:
        error = f"{type(err).__name__}: {err}"
    done = time.perf_counter()
    arrival = sent - t0
    records.append(RequestRecord(
        request_id=req.request_id, arrival_s=arrival, finish_s=done - t0,
        ttft_s=None if first is None else first - sent, energy_j=float("nan"),
        ok=not error, error=error,
    ))
    if progress is not None:
        progress(1)


async def replay_async(trace: Trace, url: str, *, metrics_url: str | None = None, model: str | None = None,
                       request_timeout_s: float = 300.0, max_connections: int = 256, progress=None) -> ReplayRun:
    """Replay ``trace`` against ``url`` (``http://host:port``); returns the records and readings."""
    import aiohttp

    base = url.rstrip("/")
    connector = aiohttp.TCPConnector(limit=max_connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        if model is None:
            try:
                model = await _model_name(session, base)
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, IndexError, ValueError) as err:
                raise ServerUnreachable(f"cannot list the models of {base}/v1/models: {err}") from err
        before = await _read_metrics(session, metrics_url)
        records: list[RequestRecord] = []
        out_tokens: dict[str, int] = {}
        t0 = time.perf_counter()
        await asyncio.gather(*(
            _one(session, base, model, r, t0, request_timeout_s, records, out_tokens, progress)
            for r in trace.requests
        ))
        wall_s = time.perf_counter() - t0
        await asyncio.sleep(0.5)  # let the engine publish the last finishes to its metrics
        after = await _read_metrics(session, metrics_url)
    records.sort(key=lambda r: int(r.request_id) if r.request_id.isdigit() else r.request_id)
    return ReplayRun(records=records, before=before, after=after, wall_s=wall_s, output_tokens=out_tokens)


def replay(trace: Trace, url: str, **kwargs) -> ReplayRun:
    return asyncio.run(replay_async(trace, url, **kwargs))


def to_policy_result(trace: Trace, run: ReplayRun):
    """The shared per-policy result for one replay: energy, EDP, switches and arms are ``None``
    (JSON null) where camel's series were not read (no metrics URL, or none at it)."""
    from camel_vllm.bench.results import PolicyResult

    camel = run.has_camel
    return PolicyResult.from_records(
        run.records, requests_total=len(trace), energy_j=run.energy_j,
        arm_switches=run.arm_switches, arms=run.arm_pulls if camel else None,
        mean_edp_js=run.mean_edp_js,
    )


def failures(run: ReplayRun) -> Mapping[str, str]:
    return {r.request_id: r.error for r in run.records if not r.ok}
