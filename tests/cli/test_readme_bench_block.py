"""The README's ``vllm bench serve`` block works when pasted at once.

Its server starts in the background (``&``) and nothing else waits for it, so each client must:
``vllm bench serve`` through vLLM's ``--ready-check-timeout-sec`` (without it, it reports 0 of
40 and exits 0), ``bench replay`` through its own ``--ready-timeout-s``. The bench serve line is
parsed by vLLM 0.32's own parser (a subprocess: it imports vLLM, ~15 s).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from camel_vllm.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
PARSE_WITH_VLLM = (
    "import sys\n"
    "from camel_vllm.vllm_plugin.serve import answer_vllm_version\n"
    "answer_vllm_version()\n"
    "from vllm.benchmarks.serve import add_cli_args\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "parser = FlexibleArgumentParser()\n"
    "add_cli_args(parser)\n"
    "print(parser.parse_args(sys.argv[1:]).ready_check_timeout_sec)\n"
)


def _block_commands() -> list[list[str]]:
    """The commands of the bash block after "To replay a trace with vLLM's own client"."""
    text = README.read_text(encoding="utf-8")
    start = text.index("To replay a trace with vLLM's own client")
    block = text[text.index("```bash\n", start) + len("```bash\n"):]
    block = block[:block.index("```")]
    joined = block.replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_the_server_runs_in_the_background_and_both_clients_wait_for_it():
    commands = _block_commands()
    assert commands[0][:2] == ["camel-vllm", "serve"] and commands[0][-1].endswith("&")
    serve = next(c for c in commands if c[:4] == ["camel-vllm", "vllm", "bench", "serve"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PARSE_WITH_VLLM, *serve[4:]], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 0  # vLLM waits for the endpoint
    replay = next(c for c in commands if c[:3] == ["camel-vllm", "bench", "replay"])
    args = build_parser(replay[1:]).parse_args(replay[1:])
    assert args.ready_timeout_s >= 30  # a vLLM server with --enforce-eager starts in ~30 s here
