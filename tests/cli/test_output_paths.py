"""Output paths of ``bench bandit`` and ``trace to-vllm``, checked before any work.

One behaviour for every command that writes a file: missing folders are made; a path that
cannot be a file, or that is an input (the trace) or another output, is one line and exit 2
before anything runs (it used to be found after the run, or to overwrite the trace).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from camel_vllm.cli import main as cli_main

SMALL_BANDIT = ["bench", "bandit", "--arms", "4", "--horizon", "10", "--seeds", "1", "--env", "stationary",
                "--policies", "ts", "--no-ablation"]


def _trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"timestamp": i * 0.5, "input_length": 40, "output_length": 10}) + "\n"
                            for i in range(5)))
    return path


def test_bench_bandit_refuses_a_json_it_cannot_make_before_running(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert cli_main([*SMALL_BANDIT, "--json", str(a_file / "out.json")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f'camel-vllm bench bandit: camel config: --json="{a_file / "out.json"}": '
                                    f"folder {a_file}: is a file, not a folder")
    assert captured.out == ""  # nothing ran


def test_bench_bandit_makes_missing_folders_for_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "a" / "b.json", tmp_path / "c" / "d.png"
    assert cli_main([*SMALL_BANDIT, "--json", str(out), "--plot", str(png)]) == 0
    assert json.loads(out.read_text())["envs"]["stationary"]["policies"]["ts"]
    assert png.stat().st_size > 1000


def test_bench_bandit_outputs_must_differ_from_the_trace_and_each_other(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,10,3\n")
    before = trace.read_text()
    assert cli_main(["bench", "bandit", "--cost-fit", str(trace), "--json", str(trace)]) == 2
    assert capsys.readouterr().err.strip() == (f'camel-vllm bench bandit: camel config: --json="{trace}": is the '
                                               f"same file as --cost-fit {trace}; writing it would overwrite that")
    assert trace.read_text() == before
    out = tmp_path / "same"
    assert cli_main([*SMALL_BANDIT, "--json", str(out), "--plot", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f'camel-vllm bench bandit: camel config: --plot="{out}": is the '
                                               f"same file as --json {out}; writing it would overwrite that")


def test_trace_to_vllm_refuses_to_overwrite_its_trace(tmp_path, capsys):
    trace = _trace(tmp_path)
    before = trace.read_text()
    os.link(trace, tmp_path / "link.jsonl")
    for out in (trace, tmp_path / "link.jsonl", tmp_path / "." / "t.jsonl"):
        assert cli_main(["trace", "to-vllm", str(trace), str(out)]) == 2
        assert capsys.readouterr().err.strip() == (f'camel-vllm trace to-vllm: camel config: OUT="{out}": is the '
                                                   f"same file as TRACE {trace}; writing it would overwrite that")
    assert trace.read_text() == before


def test_trace_to_vllm_checks_out_first_and_makes_missing_folders(tmp_path, capsys):
    trace = _trace(tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert cli_main(["trace", "to-vllm", str(trace), str(a_file / "o.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == (f'camel-vllm trace to-vllm: camel config: OUT="{a_file / "o.jsonl"}": '
                                               f"folder {a_file}: is a file, not a folder")
    out = tmp_path / "x" / "y" / "o.jsonl"
    assert cli_main(["trace", "to-vllm", str(trace), str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5
