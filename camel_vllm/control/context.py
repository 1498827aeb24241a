"""Turning what the engine sees into a decision context.

The context is built only from what an engine adapter can observe cheaply at an iteration
boundary: requests running and waiting, and the mean prompt length of waiting requests (of
recent arrivals when none waits). Each is bucketed so a policy can keep per-context statistics;
:class:`ContextModel` with ``contextual=False`` always answers context 0 (Camel's bandit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from camel_vllm.core.events import Context, EngineSnapshot


@dataclass(frozen=True)
class ContextBuckets:
    """Bucket edges. Load = (running + waiting) / max batch cap; prompt length in tokens.

    Edges are chosen so the Azure conversation trace's steady state and its bursts fall in
    different load buckets on the emulated Orin (see README, contextual bandit section).
    """

    load_edges: tuple[float, ...] = (0.5, 1.5)
    prompt_edges: tuple[float, ...] = (512.0,)
    #: Half-life (s) of the recent arrivals' prompt mix (used when no request waits).
    prompt_half_life_s: float = 10.0
    #: Half-life (s) of the exponential smoothing of load before bucketing: one snapshot's
    #: queue is noisy (Poisson arrivals), and a context that flaps splits the evidence. 0
    #: disables smoothing. 2 s spans a few decision epochs on the emulated Orin.
    load_half_life_s: float = 2.0


class ContextModel:
    """Tracks the recent arrivals' prompt mix (exponentially decayed) and buckets snapshots into
    contexts. The arrival rate is not a context feature: camel's workload estimate
    (:mod:`camel_vllm.policies.workload`) is the one that measures it."""

    def __init__(self, *, contextual: bool, max_batch: int, buckets: ContextBuckets | None = None) -> None:
        self.contextual = contextual
        self.max_batch = max(1, max_batch)
        self.buckets = buckets or ContextBuckets()
        self._decay_per_s = math.log(2.0) / self.buckets.prompt_half_life_s
        self._prompt_t_s: float | None = None
        self._prompt_sum = 0.0
        self._prompt_n = 0.0
        self._load: float | None = None
        self._load_t_s: float | None = None

    @property
    def num_contexts(self) -> int:
        if not self.contextual:
            return 1
        return (len(self.buckets.load_edges) + 1) * (len(self.buckets.prompt_edges) + 1)

    def request_arrived(self, now_s: float, prompt_tokens: int) -> None:
        """Add an arrival's prompt to the decayed prompt mix."""
        self._decay_to(now_s)
        self._prompt_sum += prompt_tokens
        self._prompt_n += 1

    def context(self, snapshot: EngineSnapshot) -> Context:
        if not self.contextual:
            return Context()
        load = self._smoothed_load(snapshot.now_s, (snapshot.num_running + snapshot.num_waiting) / self.max_batch)
        if snapshot.num_waiting:
            prompt = snapshot.waiting_prompt_tokens / snapshot.num_waiting
        else:
            prompt = self._prompt_sum / self._prompt_n if self._prompt_n > 1e-9 else 0.0
        load_bucket = _bucket(load, self.buckets.load_edges)
        prompt_bucket = _bucket(prompt, self.buckets.prompt_edges)
        cid = load_bucket * (len(self.buckets.prompt_edges) + 1) + prompt_bucket
        return Context(id=cid, features=(float(load_bucket), float(prompt_bucket)))

    def _smoothed_load(self, now_s: float, load: float) -> float:
        """Exponentially smoothed load (half-life ``load_half_life_s``, by elapsed time)."""
        half_life_s = self.buckets.load_half_life_s
        if self._load is None or self._load_t_s is None or half_life_s <= 0.0:
            self._load, self._load_t_s = load, now_s
            return load
        dt_s = max(0.0, now_s - self._load_t_s)
        keep = math.exp(-math.log(2.0) * dt_s / half_life_s)
        self._load = keep * self._load + (1.0 - keep) * load
        self._load_t_s = max(self._load_t_s, now_s)
        return self._load

    def _decay_to(self, now_s: float) -> None:
        if self._prompt_t_s is not None and now_s > self._prompt_t_s:
            # Older prompts count less, so bursts of long prompts show.
            factor = math.exp(-self._decay_per_s * (now_s - self._prompt_t_s))
            self._prompt_sum *= factor
            self._prompt_n *= factor
        if self._prompt_t_s is None or now_s > self._prompt_t_s:
            self._prompt_t_s = now_s


def _bucket(value: float, edges: tuple[float, ...]) -> int:
    for i, edge in enumerate(edges):
        if value < edge:
            return i
    return len(edges)
