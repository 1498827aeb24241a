"""One name, one meaning across the CLI; the old spellings still work with a one-line notice.

``--device-profile``/``--model-profile``: emulator profiles; ``--device``: the backend kind
(probe); ``--json PATH``: a file (``-``: standard output, probe); ``--plot FILE`` (bandit,
matrix) and ``--plot-dir DIR`` (bench sim); ``--model`` in bench replay is vLLM's served model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camel_vllm.cli import build_parser
from camel_vllm.cli import main as cli_main


def _trace(tmp_path: Path, n: int = 20) -> str:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"timestamp": i * 0.5, "input_length": 40, "output_length": 10}) + "\n"
                            for i in range(n)))
    return str(path)


def test_bench_sim_old_spellings_work_and_say_the_new_ones(tmp_path, capsys):
    out = tmp_path / "r.json"
    plots = tmp_path / "plots"
    rc = cli_main(["bench", "sim", "--trace", _trace(tmp_path), "--policies", "default", "--workers", "1",
                   "--device", "orin-agx-64gb", "--model", "qwen-2.5-3b", "--plot", str(plots), "--json", str(out)])
    assert rc == 0
    err = capsys.readouterr().err.splitlines()
    for old, new in (("--device", "--device-profile"), ("--model", "--model-profile"), ("--plot", "--plot-dir")):
        assert err.count(f"camel-vllm bench sim: {old} is deprecated, use {new}") == 1
    data = json.loads(out.read_text())
    assert (data["device"], data["model"]) == ("orin-agx-64gb", "qwen-2.5-3b")
    assert (plots / "edp_over_time.png").exists()
    rc = cli_main(["bench", "sim", "--trace", _trace(tmp_path), "--policies", "default", "--workers", "1",
                   "--device-profile", "orin-agx-64gb", "--model-profile", "qwen-2.5-3b", "--json", str(out)])
    assert rc == 0 and "deprecated" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, shown, hidden", [
    (["bench", "sim"], ["--device-profile", "--model-profile", "--plot-dir", "--json PATH"],
     ["--device ", "--model ", "--plot "]),
    (["bench", "replay"], ["--device-label", "--model MODEL", "--ready-timeout-s", "--json PATH"], ["--device "]),
    (["bench", "bandit"], ["--json PATH", "--plot PATH.png"], []),
    (["probe"], ["--device {", "--device-profile", "--model-profile", "--json [PATH]"], []),
])
def test_help_shows_the_new_names_only(argv, shown, hidden):
    parser = build_parser(argv)  # adds the arguments of the command argv names
    sub = parser._subparsers._group_actions[0].choices[argv[0]]
    if len(argv) > 1:
        sub = sub._subparsers._group_actions[0].choices[argv[1]]
    text = " ".join(sub.format_help().split())
    for name in shown:
        assert name in text, name
    for name in hidden:
        assert name not in text, name
    assert "missing folders are made" in text or argv == ["probe"]


def test_probe_json_path_and_stdout_and_the_old_bare_switch(tmp_path, capsys):
    assert cli_main(["probe", "--device", "emulated", "--json", "-", "--window-s", "0.01"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["kind"] == "emulated" and captured.err == ""
    assert cli_main(["probe", "--device", "emulated", "--json", "--window-s", "0.01"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["kind"] == "emulated"
    assert captured.err == ("camel-vllm probe: --json without a path is deprecated, use --json - (standard output) "
                            "or --json PATH\n")
    path = tmp_path / "new" / "probe.json"
    assert cli_main(["probe", "--device", "emulated", "--json", str(path), "--window-s", "0.01"]) == 0
    assert json.loads(path.read_text())["kind"] == "emulated"
    out = capsys.readouterr().out
    assert out.startswith("device:      emulated") and out.endswith(f"wrote {path}\n")
    assert cli_main(["probe", "--device", "emulated", "--json", str(tmp_path), "--window-s", "0.01"]) == 2
    assert capsys.readouterr().err.strip() == (f'camel-vllm probe: camel config: --json="{tmp_path}": is a folder; '
                                               "name the file to write")
