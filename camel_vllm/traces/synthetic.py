"""Synthetic traces: Alpaca-like short prompts at a fixed rate, for Camel's experiment.

Camel (arXiv 2508.09173) replays Alpaca instructions one a second with at most 70 output
tokens. Alpaca (Taori et al., 2023) instructions plus inputs are short: about 20 to 100
tokens with a long right tail, so prompts are drawn log-normally (median 45 tokens,
sigma 0.45, clipped to [8, 256]) and outputs uniformly in [20, 70]. Seeded and reproducible.
"""

from __future__ import annotations

import random

from camel_vllm.traces.base import Trace, TraceRequest

ALPACA_PROMPT_MEDIAN_TOKENS = 45.0
ALPACA_PROMPT_SIGMA = 0.45
ALPACA_PROMPT_RANGE = (8, 256)
ALPACA_OUTPUT_RANGE = (20, 70)


def alpaca_like(num_requests: int, *, rate_per_s: float = 1.0, seed: int = 0,
                max_output_tokens: int = 70, poisson: bool = False) -> Trace:
    """``num_requests`` arrivals ``1/rate_per_s`` apart (or Poisson) with Alpaca-like lengths."""
    import math

    rng = random.Random(seed)
    requests = []
    t = 0.0
    lo, hi = ALPACA_PROMPT_RANGE
    for i in range(num_requests):
        prompt = int(round(rng.lognormvariate(math.log(ALPACA_PROMPT_MEDIAN_TOKENS), ALPACA_PROMPT_SIGMA)))
        output = rng.randint(ALPACA_OUTPUT_RANGE[0], min(ALPACA_OUTPUT_RANGE[1], max_output_tokens))
        requests.append(TraceRequest(str(i), t, min(hi, max(lo, prompt)), output))
        t += rng.expovariate(rate_per_s) if poisson else 1.0 / rate_per_s
    return Trace(name=f"alpaca-like-{num_requests}-seed{seed}", requests=tuple(requests), source="synthetic",
                 notes=(f"synthetic Alpaca-like lengths, {rate_per_s:g} req/s, output <= {max_output_tokens}",))


# ----------------------------------------------------------------------------------------
# The robustness suite's synthetic workloads (``bench matrix``). Each is seeded, arrives at
# a mean of 1 request/s (``--target-rps`` / the matrix's loads rescale it, keeping the
# burstiness) and draws token counts from clipped log-normals, the usual fit to LLM
# request lengths (Azure 2023 traces: Patel et al., "Splitwise", ISCA 2024; BurstGPT:
# Wang et al., 2024). Medians and spreads are chosen to cover what the Azure excerpts do not.

#: RAG / chat-history: long prompts (median 4,096 tokens, a long right tail to 32k) and
#: medium answers (median 256). LongBench-style inputs; the issue's "long prompts" workload.
LONG_PROMPT = {"prompt": (4096.0, 0.8, 512, 32768), "output": (256.0, 0.8, 16, 2048)}
#: Camel's Alpaca-like setting without its 70-token cap: short instructions (as
#: :func:`alpaca_like`) and long generations (median 300 tokens).
SHORT_PROMPT_LONG_OUTPUT = {"prompt": (ALPACA_PROMPT_MEDIAN_TOKENS, ALPACA_PROMPT_SIGMA, 8, 256),
                            "output": (300.0, 0.6, 32, 2048)}
#: On/off bursts: conversation-like sizes; ON periods (mean 30 s) at 4 x the mean rate,
#: OFF periods (mean 60 s) at 0.1 x, exponential lengths (a two-state Markov-modulated
#: Poisson process; Heffes and Lucantoni, IEEE JSAC 4(6), 1986).
ON_OFF = {"prompt": (1024.0, 1.0, 16, 8192), "output": (200.0, 0.8, 8, 2048)}
ON_MEAN_S, OFF_MEAN_S = 30.0, 60.0
ON_RATE_FACTOR, OFF_RATE_FACTOR = 4.0, 0.1

SYNTHETIC_KINDS = ("long-prompt", "short-prompt-long-output", "on-off")


def _lognormal(rng: random.Random, spec: tuple[float, float, int, int]) -> int:
    import math

    median, sigma, lo, hi = spec
    return min(hi, max(lo, int(round(rng.lognormvariate(math.log(median), sigma)))))


def synthetic(kind: str, num_requests: int, *, seed: int = 0) -> Trace:
    """``num_requests`` requests of workload ``kind`` (one of :data:`SYNTHETIC_KINDS`), 1 req/s mean."""
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"unknown synthetic trace {kind!r} (known: {', '.join(SYNTHETIC_KINDS)})")
    if num_requests < 1:
        raise ValueError(f"a synthetic trace needs at least one request, got {num_requests}")
    rng = random.Random(f"{kind}:{seed}")
    sizes = {"long-prompt": LONG_PROMPT, "short-prompt-long-output": SHORT_PROMPT_LONG_OUTPUT, "on-off": ON_OFF}[kind]
    requests = []
    t = 0.0
    if kind == "on-off":
        # Normalise the two rates so the long-run mean is 1 request/s.
        mean_rate = (ON_RATE_FACTOR * ON_MEAN_S + OFF_RATE_FACTOR * OFF_MEAN_S) / (ON_MEAN_S + OFF_MEAN_S)
        rates = (ON_RATE_FACTOR / mean_rate, OFF_RATE_FACTOR / mean_rate)
        on = True
        phase_end = rng.expovariate(1.0 / ON_MEAN_S)
    for i in range(num_requests):
        if kind == "on-off":
            while True:
                gap = rng.expovariate(rates[0] if on else rates[1])
                if t + gap <= phase_end:
                    t += gap
                    break
                t = phase_end  # memoryless: restart the draw in the next phase
                on = not on
                phase_end = t + rng.expovariate(1.0 / (ON_MEAN_S if on else OFF_MEAN_S))
        elif i:
            t += rng.expovariate(1.0)
        requests.append(TraceRequest(str(i), t, _lognormal(rng, sizes["prompt"]), _lognormal(rng, sizes["output"])))
    t0 = requests[0].arrival_s
    requests = [TraceRequest(r.request_id, r.arrival_s - t0, r.prompt_tokens, r.output_tokens) for r in requests]
    return Trace(name=f"synthetic-{kind}", requests=tuple(requests), source="synthetic",
                 notes=(f"synthetic {kind} (camel_vllm/traces/synthetic.py), seed {seed}, 1 req/s mean",))
