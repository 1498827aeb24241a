"""Every other subcommand with bad numbers and bad files: one line on stderr, exit 2, before any work.

``bench bandit``, ``probe``, ``fit-energy-model``, ``plan`` and ``make-tiny-model``: NaN and
negative numbers, unknown policy names, output paths that are folders (refused before the
work, not after it), and input files that are binary, folders or FIFOs (a FIFO used to block
forever: those cases run in a subprocess under a timeout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camel_vllm.cli import main as cli_main

CLI = "import sys; from camel_vllm.cli import main; sys.exit(main())"


#: The tests here share a module-scoped fixture: one xdist worker runs them all (scripts/test.sh
#: distributes with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_cli_bad_input")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A request log and two fitted models (from a short simulation), a binary file, a folder."""
    root = tmp_path_factory.mktemp("cli")
    trace = root / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": i * 0.5, "input_length": 40 + i, "output_length": 10,
                                         "hash_ids": []}) + "\n" for i in range(40)))
    cfg = root / "c.yaml"
    cfg.write_text(f"request_log: {root / 'req.jsonl'}\nfrequencies_mhz: [306, 930.75]\nbatch_sizes: [4, 8]\n")
    assert cli_main(["bench", "sim", "--trace", str(trace), "--policies", "camel", "--config", str(cfg),
                     "--workers", "1", "--json", str(root / "r.json")]) == 0
    for name in ("a", "b"):
        assert cli_main(["fit-energy-model", str(root / "req.camel.jsonl"), "--json", str(root / f"{name}.json")]) == 0
    (root / "bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (root / "dir").mkdir()
    return {"root": str(root), "trace": str(trace), "log": str(root / "req.camel.jsonl"),
            "model_a": str(root / "a.json"), "model_b": str(root / "b.json"), "bin": str(root / "bin"),
            "dir": str(root / "dir")}


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


CASES = [
    (["bench", "bandit", "--arms", "4", "--horizon", "10", "--seeds", "1", "--noise-std", "nan"],
     "camel-vllm bench bandit: --noise-std=nan must be a finite number >= 0"),
    (["bench", "bandit", "--arms", "4", "--horizon", "10", "--seeds", "1", "--policies", "camel-ts,nope"],
     "camel-vllm bench bandit: --policies=camel-ts,nope: unknown nope (known: camel-ts, ts, zeus-ts, ucb, epsilon, "
     "grid, default, oracle, zeus-ts-w10)"),
    (["bench", "bandit", "--arms", "4", "--horizon", "10", "--seeds", "1", "--policies", "camel"],
     "camel-vllm bench bandit: --policies=camel: unknown camel (known: camel-ts, ts, zeus-ts, ucb, epsilon, grid, "
     "default, oracle, zeus-ts-w10); camel learns the board per iteration, which these environments do not model: "
     "run it with bench sim, or camel-ts here"),
    (["bench", "bandit", "--arms", "4", "--horizon", "10", "--seeds", "1", "--policies", ","],
     "camel-vllm bench bandit: --policies=,: name at least one (known: camel-ts, ts, zeus-ts, ucb, epsilon, "
     "grid, default, oracle, zeus-ts-w10)"),
    (["bench", "bandit", "--arms", "4", "--horizon", "10", "--seeds", "1", "--json", "{dir}"],
     'camel-vllm bench bandit: camel config: --json="{dir}": is a folder; name the file to write'),
    (["bench", "bandit", "--arms", "4", "--horizon", "10", "--seeds", "1", "--plot", "{dir}"],
     'camel-vllm bench bandit: camel config: --plot="{dir}": is a folder; name the file to write'),
    (["bench", "bandit", "--cost-fit", "{bin}"],
     "camel-vllm bench bandit: --cost-fit {bin}: not a UTF-8 text file (byte at offset 0)"),
    (["probe", "--device", "emulated", "--window-s", "nan"],
     "camel-vllm probe: camel config: --window-s=NaN: must be a finite number"),
    (["probe", "--device", "emulated", "--window-s", "-1"],
     "camel-vllm probe: camel config: --window-s=-1.0: must be >= 0"),
    (["fit-energy-model", "{bin}"], "camel-vllm fit-energy-model: {bin}: not a UTF-8 text file (byte at offset 0)"),
    (["fit-energy-model", "{dir}"], 'camel-vllm fit-energy-model: camel config: LOG="{dir}": is a folder, not a file'),
    (["fit-energy-model", "{log}", "--shrinkage", "nan"],
     "camel-vllm fit-energy-model: camel config: --shrinkage=NaN: must be a finite number"),
    (["fit-energy-model", "{log}", "--shrinkage", "-1"],
     "camel-vllm fit-energy-model: camel config: --shrinkage=-1.0: must be >= 0"),
    (["fit-energy-model", "{log}", "--seed", "-1"],
     "camel-vllm fit-energy-model: camel config: --seed=-1: must be >= 0"),
    (["fit-energy-model", "{log}", "--json", "{dir}"],
     'camel-vllm fit-energy-model: camel config: --json="{dir}": is a folder; name the file to write'),
    (["plan", "--models", "{model_a}", "{model_b}", "--trace", "{trace}", "--zeta", "0.5", "--min-share", "nan"],
     "camel-vllm plan: camel config: --min-share=NaN: must be a finite number"),
    (["plan", "--models", "{model_a}", "{model_b}", "--trace", "{trace}", "--zeta", "0.5", "--min-share", "2"],
     "camel-vllm plan: camel config: --min-share=2.0: must be <= 1"),
    (["plan", "--models", "{model_a}", "{model_b}", "--trace", "{trace}", "--zeta", "0.5", "--json", "{dir}"],
     'camel-vllm plan: camel config: --json="{dir}": is a folder; name the file to write'),
    (["plan", "--models", "{bin}", "{model_b}", "--trace", "{trace}", "--zeta", "0.5"],
     "camel-vllm plan: {bin}: not a UTF-8 text file (byte at offset 0)"),
    (["plan", "--models", "{model_a}", "{model_b}", "--trace", "{bin}", "--zeta", "0.5"],
     "camel-vllm plan: {bin}:1: not a UTF-8 text file (byte 0x89 at offset 0)"),
    (["make-tiny-model", "{bin}"], "camel-vllm make-tiny-model: {bin}: exists and is not a folder"),
]


@pytest.mark.parametrize("argv, line", CASES, ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, line) -> None:
    argv = [a.format(**files) for a in argv]
    assert cli_main(argv) == 2
    assert _one_line(capsys) == line.format(**files)


@pytest.mark.parametrize("argv, option", [
    (["bench", "bandit", "--cost-fit", "{fifo}"], '--cost-fit="{fifo}"'),
    (["fit-energy-model", "{fifo}"], 'LOG="{fifo}"'),
    (["plan", "--models", "{fifo}", "{model_b}", "--trace", "{trace}", "--zeta", "0.5"], '--models="{fifo}"'),
])
def test_a_fifo_is_refused_not_waited_on(files, tmp_path: Path, argv, option) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    names = {**files, "fifo": str(fifo)}
    done = subprocess.run([sys.executable, "-c", CLI, *[a.format(**names) for a in argv]], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    command = " ".join(argv[:2]) if argv[0] == "bench" else argv[0]
    assert done.stderr.strip() == (f"camel-vllm {command}: camel config: {option.format(**names)}: "
                                   "is not a regular file (a FIFO, socket or device)")
