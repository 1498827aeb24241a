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
