"""Write a small Llama-architecture model (random weights, local tokenizer) that vLLM serves offline.

Example: ``camel-vllm make-tiny-model models/tiny`` (2 layers, hidden 128) or ``camel-vllm
make-tiny-model models/mid --layers 4 --hidden 512``; docs/vllm-integration.md lists the sizes
and their step times.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="output folder (created; files in it are overwritten)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size (default 128)")
    parser.add_argument("--heads", type=int, default=None, help="attention heads (default hidden/32)")
    parser.add_argument("--vocab", type=int, default=4096, help="tokenizer vocabulary size (default 4096)")
    parser.add_argument(
        "--max-position-embeddings", type=int, default=4096,
        help="longest context the model accepts (default 4096)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")


def run(args: argparse.Namespace) -> int:
    from camel_vllm.testing.tiny_model import build_tiny_model

    for name in ("layers", "hidden", "vocab", "max_position_embeddings"):
        if getattr(args, name) < 1:
            print(f"camel-vllm make-tiny-model: --{name.replace('_', '-')}={getattr(args, name)}: must be >= 1",
                  file=sys.stderr)
            return 2
    if os.path.exists(args.dir) and not os.path.isdir(args.dir):
        print(f"camel-vllm make-tiny-model: {args.dir}: exists and is not a folder", file=sys.stderr)
        return 2
    try:
        spec = build_tiny_model(
            args.dir, layers=args.layers, hidden=args.hidden, heads=args.heads, vocab=args.vocab,
            max_position_embeddings=args.max_position_embeddings, seed=args.seed,
        )
    except ValueError as err:
        print(f"camel-vllm make-tiny-model: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"camel-vllm make-tiny-model: {args.dir}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.dir}: {spec.layers} layers, hidden {spec.hidden}, heads {spec.heads}/{spec.kv_heads}, "
        f"vocab {spec.vocab}, max_position_embeddings {spec.max_position_embeddings}"
    )
    return 0
