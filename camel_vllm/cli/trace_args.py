"""Trace options shared by ``bench sim``, ``bench replay`` and ``trace to-vllm``.

Every numeric option is checked before the trace is read: a bad value (``--target-rps nan``,
``--max-context -5``) is a :class:`TraceOptionError` whose text is one line naming the option.
:func:`load_fitted` also fits the trace to a context limit (prompt + output tokens) and says
how many requests that clipped and where the limit came from (:class:`ContextFit`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass

from camel_vllm.core.errors import CamelError
from camel_vllm.traces import FORMATS, Trace, load_trace, transforms

#: Keys of a Hugging Face ``config.json`` that bound the context, in the order vLLM 0.32 reads
#: them (vllm/transformers_utils/model_arch_config_convertor.py, ``derive_max_model_len_and_key``:
#: the smallest present wins, and ``model_max_length`` overrides the others when set).
HF_CONTEXT_KEYS: tuple[str, ...] = (
    "max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
    "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len",
)
#: The smallest context a request fits in: one prompt token and one output token.
MIN_CONTEXT_TOKENS = 2


class TraceOptionError(CamelError, ValueError):
    """A trace option has a bad value; ``str(err)`` is one line naming the option."""


@dataclass(frozen=True)
class ContextFit:
    """How a trace was fitted to a context limit (tokens, prompt + output)."""

    max_context_tokens: int
    source: str
    requests_clipped: int
    requests: int

    def line(self) -> str:
        """One line for the user: how many requests were clipped, to what, and why."""
        if self.requests_clipped == 0:
            return f"context limit {self.max_context_tokens} tokens ({self.source}): no request needed clipping"
        return (f"clipped {self.requests_clipped} of {self.requests} requests to a context of "
                f"{self.max_context_tokens} tokens (prompt + output; {self.source})")

    def as_dict(self) -> dict[str, object]:
        return {"max_context_tokens": self.max_context_tokens, "source": self.source,
                "requests_clipped": self.requests_clipped, "requests": self.requests}


def add_trace_arguments(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    if positional:
        parser.add_argument("trace", help="trace file (Azure CSV, BurstGPT CSV, Mooncake or timed_trace JSONL)")
    else:
        parser.add_argument("--trace", required=True,
                            help="trace file (Azure/BurstGPT CSV, Mooncake/timed_trace JSONL)")
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS), help="trace format (default: detect)")
    parser.add_argument("--start-s", type=float, default=0.0, help="time window start, s since the trace start")
    parser.add_argument("--end-s", type=float, default=None, help="time window end, s since the trace start")
    parser.add_argument("--requests", type=int, default=None, help="keep the first N requests (after the window)")
    parser.add_argument("--target-rps", type=float, default=None,
                        help="rescale arrivals to this mean rate (req/s), keeping burstiness")
    parser.add_argument("--max-context", type=int, default=None,
                        help="clip prompt+output tokens to this context (default: the model's, where known)")
    parser.add_argument("--max-output", type=int, default=None, help="clip output tokens to this many")


def check_trace_options(args: argparse.Namespace) -> None:
    """Refuse bad values of the shared trace options (one-line :class:`TraceOptionError`)."""
    _number(args.start_s, "--start-s", minimum=0.0)
    if args.end_s is not None:
        _number(args.end_s, "--end-s", minimum=0.0)
    if args.target_rps is not None:
        _number(args.target_rps, "--target-rps", positive=True, unit="req/s")
    if args.requests is not None and args.requests < 1:
        raise TraceOptionError(f"--requests {args.requests}: must be >= 1")
    if args.max_context is not None and args.max_context < MIN_CONTEXT_TOKENS:
        raise TraceOptionError(f"--max-context {args.max_context}: must be >= {MIN_CONTEXT_TOKENS} tokens "
                               "(one prompt and one output token)")
    if args.max_output is not None and args.max_output < 1:
        raise TraceOptionError(f"--max-output {args.max_output}: must be >= 1 token")


def _number(value: float, option: str, *, minimum: float | None = None, positive: bool = False,
            unit: str = "s") -> None:
    if not math.isfinite(value):
        raise TraceOptionError(f"{option} {value}: must be a finite number ({unit})")
    if positive and value <= 0:
        raise TraceOptionError(f"{option} {value:g}: must be > 0 ({unit})")
    if minimum is not None and value < minimum:
        raise TraceOptionError(f"{option} {value:g}: must be >= {minimum:g} ({unit})")


def context_from_model_dir(model_dir: str) -> tuple[int, str]:
    """The context limit a model folder's ``config.json`` sets, as vLLM derives it, and where it came from.

    Raises :class:`TraceOptionError` (naming ``--model-dir``) when the folder has no readable
    config or the config names no limit.
    """
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except OSError as err:
        raise TraceOptionError(f"--model-dir {model_dir}: cannot read {path} ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise TraceOptionError(f"--model-dir {model_dir}: {path} is not JSON ({err.msg}, line {err.lineno})") from err
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    found = {k: text[k] for k in HF_CONTEXT_KEYS
             if isinstance(text.get(k), int) and not isinstance(text.get(k), bool) and text[k] > 0}
    if not found:
        raise TraceOptionError(f"--model-dir {model_dir}: {path} names no context limit "
                               f"(none of {', '.join(HF_CONTEXT_KEYS)}); pass --max-context")
    key = "model_max_length" if "model_max_length" in found else min(found, key=lambda k: found[k])
    return int(found[key]), f"{path} {key}"


def trace_from_args(args: argparse.Namespace, *, max_context_tokens: int | None = None) -> Trace:
    """The trace the options describe; ``--max-context`` wins over ``max_context_tokens`` (a default)."""
    limit = args.max_context if args.max_context is not None else max_context_tokens
    return load_fitted(args, limit=limit, source="--max-context")[0]


def load_fitted(args: argparse.Namespace, *, limit: int | None, source: str) -> tuple[Trace, ContextFit | None]:
    """Check the options, load the trace (window, first N, rate, output clip) and fit it to ``limit``.

    ``limit`` (tokens, prompt + output) comes from ``source`` (said in the result); ``None``:
    no context clipping. Returns the trace and how it was fitted (``None`` without a limit).
    """
    check_trace_options(args)
    trace = load_trace(
        args.trace, args.format, start_s=args.start_s, end_s=args.end_s, requests=args.requests,
        target_rps=args.target_rps, max_output_tokens=args.max_output,
    )
    if limit is None:
        return trace, None
    clipped = transforms.clip_tokens(trace, limit, None)
    changed = sum(1 for a, b in zip(trace.requests, clipped.requests, strict=False)
                  if (a.prompt_tokens, a.output_tokens) != (b.prompt_tokens, b.output_tokens))
    return clipped, ContextFit(limit, source, changed, len(clipped))


def tighter_limit(*limits: tuple[int | None, str]) -> tuple[int | None, str]:
    """The smallest of several (limit, source) pairs, ``None`` limits ignored; (None, "") if none."""
    known = [(lim, src) for lim, src in limits if lim is not None]
    if not known:
        return None, ""
    return min(known, key=lambda pair: pair[0])
