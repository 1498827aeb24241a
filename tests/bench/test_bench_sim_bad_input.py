"""``bench sim`` with bad arguments, policies and files: one line, exit 2, within seconds, never a hang.

Each command runs in a subprocess under a timeout, so a regression that hangs (a worker error
the parent cannot unpickle, a batch cap of 0) fails here instead of stalling CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from camel_vllm.bench import sim as sim_bench
from camel_vllm.bench.pool import SimWorkerError
from camel_vllm.bench.sim import PolicySpec, SimSetup, run_many
from camel_vllm.core.config import ConfigError
from camel_vllm.traces import alpaca_like

#: Seconds a refused command may take (imports included; ~2 s on the 2-core machine).
REFUSE_WITHIN_S = 60
CLI = "import sys; from camel_vllm.cli import main; sys.exit(main())"
PREFIX = "camel-vllm bench sim: "


def _timed_trace(path: Path, n: int = 30) -> str:
    path.write_text("".join(json.dumps({"timestamp": i * 0.5, "input_length": 40 + i, "output_length": 10,
                                        "hash_ids": []}) + "\n" for i in range(n)))
    return str(path)


def _bench_sim(tmp_path: Path, *args: str, trace: str | None = None) -> subprocess.CompletedProcess[str]:
    trace = trace or _timed_trace(tmp_path / "t.jsonl")
    argv = ["bench", "sim", "--trace", trace, *args]
    if "--json" not in args:
        argv += ["--json", str(tmp_path / "out.json")]
    return subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True,
                          timeout=REFUSE_WITHIN_S, cwd=str(tmp_path))


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return lines[0]


ARMS = "MHZ one of 306, 408, 510, 612, 714, 816, 930.75; BATCH one of 4, 8, 12, 16, 20, 24, 28"


@pytest.mark.parametrize("args, line", [
    (["--policies", "default,slo"],
     "camel config: slo=null: policy slo needs an slo section (metric, threshold_s, quantile)"),
    (["--policies", "default,static:700:8"], f'camel config: policies="static:700:8": no such arm ({ARMS})'),
    (["--policies", "static:612:999"], f'camel config: policies="static:612:999": no such arm ({ARMS})'),
    (["--policies", "static:612:0"],
     'camel config: policies="static:612:0": MHZ must be a frequency > 0 and BATCH an integer >= 1'),
    (["--policies", "static:auto:8"],
     'camel config: policies="static:auto:8": bench sim\'s emulated device sets clocks: write MHZ as a frequency, '
     "e.g. static:612:16 (auto is for devices whose clock camel cannot set)"),
    (["--policies", "default,camel,default"], 'camel config: policies="default": is listed twice'),
    (["--max-num-seqs", "0"], "camel config: --max-num-seqs=0: must be an integer >= 1"),
    (["--max-num-seqs", "-1"], "camel config: --max-num-seqs=-1: must be an integer >= 1"),
    (["--max-num-batched-tokens", "0"], "camel config: --max-num-batched-tokens=0: must be an integer >= 1"),
    (["--max-num-batched-tokens", "-1"], "camel config: --max-num-batched-tokens=-1: must be an integer >= 1"),
    (["--workers", "0"], "camel config: --workers=0: must be an integer >= 1"),
    (["--seed", "-3"], "camel config: --seed=-3: must be an integer >= 0"),
    (["--target-rps", "nan"], "--target-rps nan: must be a finite number (req/s)"),
    (["--target-rps", "inf"], "--target-rps inf: must be a finite number (req/s)"),
    (["--target-rps", "-1"], "--target-rps -1: must be > 0 (req/s)"),
    (["--start-s", "nan"], "--start-s nan: must be a finite number (s)"),
    (["--start-s", "-2"], "--start-s -2: must be >= 0 (s)"),
    (["--end-s", "nan"], "--end-s nan: must be a finite number (s)"),
    (["--requests", "0"], "--requests 0: must be >= 1"),
    (["--max-context", "-5"], "--max-context -5: must be >= 2 tokens (one prompt and one output token)"),
    (["--max-context", "0"], "--max-context 0: must be >= 2 tokens (one prompt and one output token)"),
    (["--max-output", "0"], "--max-output 0: must be >= 1 token"),
])
def test_bad_argument_or_policy_is_one_line_exit_2_within_seconds(tmp_path, args, line):
    t0 = time.monotonic()
    done = _bench_sim(tmp_path, *args, "--workers", "2") if "--workers" not in args else _bench_sim(tmp_path, *args)
    assert time.monotonic() - t0 < REFUSE_WITHIN_S
    assert done.returncode == 2, done.stderr[-3000:]
    assert _one_line(done) == PREFIX + line
    assert not (tmp_path / "out.json").exists()


def test_json_folder_and_plot_file_are_refused_before_simulating(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = _bench_sim(tmp_path, "--json", str(folder))
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + f'camel config: --json="{folder}": is a folder; name the file to write'
    assert "simulating" not in done.stderr  # refused before the progress bar starts
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    done = _bench_sim(tmp_path, "--plot-dir", str(a_file))
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + f'camel config: --plot-dir="{a_file}": is a file, not a folder'
    assert not (tmp_path / "out.json").exists()
    under_a_file = a_file / "out.json"
    done = _bench_sim(tmp_path, "--json", str(under_a_file))
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + (f'camel config: --json="{under_a_file}": folder {a_file}: '
                                        "is a file, not a folder")


def test_a_missing_json_folder_is_made(tmp_path):
    """One behaviour for every bench command: missing folders of an output are made (they used to
    be refused here and made by bench bandit)."""
    missing = tmp_path / "no-such-folder" / "sub" / "out.json"
    done = _bench_sim(tmp_path, "--policies", "default", "--workers", "1", "--json", str(missing))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(missing.read_text())["requests"] == 30


def test_outputs_that_are_inputs_or_each_other_are_refused_before_simulating(tmp_path):
    trace = _timed_trace(tmp_path / "t.jsonl")
    before = Path(trace).read_text()
    os.link(trace, tmp_path / "hard.json")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epoch_iterations: 8\n")
    same = "is the same file as --trace {}; writing it would overwrite that"
    for args, option, path, why in (
        (["--json", trace], "--json", trace, same.format(trace)),
        (["--json", str(tmp_path / "hard.json")], "--json", tmp_path / "hard.json", same.format(trace)),
        (["--config", str(cfg), "--json", str(cfg)], "--json", cfg,
         f"is the same file as --config {cfg}; writing it would overwrite that"),
    ):
        done = _bench_sim(tmp_path, "--policies", "default", *args, trace=trace)
        assert done.returncode == 2, done.stderr[-3000:]
        assert _one_line(done) == PREFIX + f'camel config: {option}="{path}": {why}'
    # a plot, a request log, a state file that would land on the trace
    plots = tmp_path / "plots"
    plots.mkdir()
    plot_trace = plots / "regret.png"
    plot_trace.write_text(before)
    done = _bench_sim(tmp_path, "--format", "timed_trace", "--policies", "default", "--plot-dir", str(plots),
                      trace=str(plot_trace))
    assert _one_line(done) == PREFIX + f'camel config: --plot-dir="{plot_trace}": {same.format(plot_trace)}'
    log_trace = tmp_path / "log.default.jsonl"
    log_trace.write_text(before)
    cfg.write_text(f"request_log: {tmp_path / 'log.jsonl'}\n")
    done = _bench_sim(tmp_path, "--policies", "default", "--config", str(cfg), trace=str(log_trace))
    assert _one_line(done) == PREFIX + f'camel config: request_log="{log_trace}": {same.format(log_trace)}'
    state_json = tmp_path / "state" / "camel.json"
    done = _bench_sim(tmp_path, "--policies", "camel", "--state-dir", str(tmp_path / "state"), "--json",
                      str(state_json))
    assert _one_line(done) == PREFIX + (f'camel config: --state-dir="{state_json}": is the same file as --json '
                                        f"{state_json}; writing it would overwrite that")
    assert Path(trace).read_text() == before and log_trace.read_text() == before and plot_trace.read_text() == before


def test_a_request_log_that_cannot_be_written_is_one_line_before_any_run(tmp_path):
    """/proc passes the folder checks (and root passes every permission check), but no file can
    be made there: the run used to end in 'default: FileNotFoundError: ...' from a worker."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("request_log: /proc/camel-log.jsonl\n")
    for workers in ("1", "2"):
        done = _bench_sim(tmp_path, "--policies", "default,camel", "--config", str(cfg), "--workers", workers)
        assert done.returncode == 2
        assert _one_line(done) == PREFIX + ('camel config: request_log="/proc/camel-log.jsonl": '
                                            "/proc/camel-log.default.jsonl: cannot write (No such file or directory)")
        assert "simulating" not in done.stderr


def test_config_profiles_and_seed_apply_and_options_win(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("device_profile: orin-agx-64gb\nmodel_profile: qwen-2.5-3b\nseed: 4\n")
    out = tmp_path / "out.json"
    done = _bench_sim(tmp_path, "--policies", "default", "--workers", "1", "--config", str(cfg))
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert (data["device"], data["model"]) == ("orin-agx-64gb", "qwen-2.5-3b")
    assert any(note.startswith("seed 4,") for note in data["notes"])
    done = _bench_sim(tmp_path, "--policies", "default", "--workers", "1", "--config", str(cfg),
                      "--model-profile", "llama-3.2-1b", "--seed", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert (data["device"], data["model"]) == ("orin-agx-64gb", "llama-3.2-1b")
    assert any(note.startswith("seed 2,") for note in data["notes"])


@pytest.mark.parametrize("config, args, line", [
    ("model_profile: no-such-model\n", [],
     'camel config: model_profile="no-such-model": unknown model profile '
     "(known: llama-3.1-8b, llama-3.2-1b, qwen-2.5-3b; or give a file path)"),
    ("device_profile: no-such-board\n", [],
     'camel config: device_profile="no-such-board": unknown device profile (known: h100-sxm, orin-agx-32gb, '
     "orin-agx-32gb-roofline, orin-agx-64gb, orin-agx-64gb-roofline; or give a file path)"),
    ("", ["--model-profile", "nope"],
     'camel config: --model-profile="nope": unknown model profile (known: llama-3.1-8b, llama-3.2-1b, qwen-2.5-3b; '
     "or give a file path)"),
    ("state_path: s.json\n", [],
     'camel config: state_path="s.json": bench sim keeps each policy\'s learned state with --state-dir DIR instead'),
])
def test_an_unknown_profile_or_a_refused_key_is_one_line(tmp_path, config, args, line):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config)
    done = _bench_sim(tmp_path, "--policies", "default", "--config", str(cfg), *args)
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + line
    assert not (tmp_path / "out.json").exists()


def test_config_policy_params_reach_the_policies_that_take_them(tmp_path):
    cfg = tmp_path / "c.yaml"
    results = {}
    trace = _timed_trace(tmp_path / "t.jsonl", 200)
    base = "frequencies_mhz: [306, 930.75]\nbatch_sizes: [4, 8]\nepoch_iterations: 4\n"
    for eps in ("0.0", "1.0"):
        cfg.write_text(base + f"policy_params: {{epsilon: {eps}}}\n")
        out = tmp_path / f"r{eps}.json"
        done = _bench_sim(tmp_path, "--policies", "default,epsilon", "--config", str(cfg), "--json", str(out),
                          trace=trace)
        assert done.returncode == 0, done.stderr[-3000:]
        results[eps] = json.loads(out.read_text())["policies"]["epsilon"]
    assert results["0.0"]["arms"] != results["1.0"]["arms"]  # the parameter reached the policy
    cfg.write_text(base + "policy_params: {epsilon: 0.1, bogus: 1}\n")
    done = _bench_sim(tmp_path, "--policies", "default,epsilon", "--config", str(cfg), trace=trace)
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + (
        "camel config: policy_params.bogus=1: not a parameter of any policy run here (default, epsilon)")
    cfg.write_text(base + "policy_params: {epsilon: 1.5}\n")
    done = _bench_sim(tmp_path, "--policies", "default,epsilon", "--config", str(cfg), trace=trace)
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + "camel config: policy_params.epsilon=1.5: must be in [0, 1]"


def test_bad_trace_files_name_the_file(tmp_path):
    binary = tmp_path / "image.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    done = _bench_sim(tmp_path, trace=str(binary))
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + f"{binary}:1: not a UTF-8 text file (byte 0x89 at offset 0)"
    later = tmp_path / "later.jsonl"
    later.write_bytes(b'{"timestamp": 0, "input_length": 4, "output_length": 2}\n{"timestamp": 1\xff}\n')
    done = _bench_sim(tmp_path, trace=str(later))
    assert _one_line(done) == PREFIX + f"{later}:2: not a UTF-8 text file (byte 0xff at offset 71)"
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,\x00,3\n")
    done = _bench_sim(tmp_path, trace=str(nul))
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + f"{nul}:2: ContextTokens='\\x00' is not an integer"
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    done = _bench_sim(tmp_path, trace=str(fifo))  # reading it would block forever
    assert done.returncode == 2
    assert _one_line(done) == PREFIX + f"{fifo}: is not a regular file (a FIFO, socket or device)"
    done = _bench_sim(tmp_path, trace=str(tmp_path))
    assert _one_line(done) == PREFIX + f"{tmp_path}: is a folder, not a file"
    done = _bench_sim(tmp_path, trace=str(tmp_path / "missing.csv"))
    assert _one_line(done) == PREFIX + f"{tmp_path / 'missing.csv'}: no such file"


# ----------------------------------------------------------- errors inside worker processes
def _setup() -> SimSetup:
    return SimSetup.make(device_profile="orin-agx-32gb", model_profile="llama-3.2-1b")


def test_config_error_in_a_worker_reaches_the_parent_at_once():
    # Specs that skipped check_specs: the worker raises ConfigError, which must unpickle in the
    # parent (it used to leave the pool waiting forever) and stop the other run.
    trace = alpaca_like(300, rate_per_s=2.0, seed=1)
    specs = [PolicySpec("camel", "camel"), PolicySpec("bad", "static", {"arm": [612, 999]})]
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        run_many(_setup(), specs, trace, workers=2)
    assert err.value.key == "policy_params.arm" and err.value.value == [612, 999]
    assert time.monotonic() - t0 < 30


def test_worker_that_dies_is_reported_not_waited_for(monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    real_run_one = sim_bench.run_one

    def run_one(setup, spec, trace, on_finish=None):
        if spec.label == "dies":
            os.kill(os.getpid(), signal.SIGKILL)  # an OOM kill, say
        return real_run_one(setup, spec, trace, on_finish)

    monkeypatch.setattr(sim_bench, "run_one", run_one)  # the forked workers inherit it
    trace = alpaca_like(40, rate_per_s=2.0, seed=1)
    t0 = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        run_many(_setup(), [PolicySpec("default", "default"), PolicySpec("dies", "default")], trace, workers=2)
    assert time.monotonic() - t0 < 30


def test_any_other_worker_error_is_one_picklable_line(monkeypatch):
    def run_one(setup, spec, trace, on_finish=None):
        raise KeyError("no such thing")

    monkeypatch.setattr(sim_bench, "run_one", run_one)
    trace = alpaca_like(10, rate_per_s=2.0, seed=1)
    with pytest.raises(SimWorkerError) as err:
        run_many(_setup(), [PolicySpec("default", "default"), PolicySpec("camel", "camel")], trace, workers=2)
    assert str(err.value) in ("default: KeyError: 'no such thing'", "camel: KeyError: 'no such thing'")


def test_config_error_pickles_with_its_fields():
    import pickle

    err = pickle.loads(pickle.dumps(ConfigError("slo", None, "policy slo needs an slo section")))
    assert (err.key, err.value, err.reason) == ("slo", None, "policy slo needs an slo section")
    assert str(err) == "camel config: slo=null: policy slo needs an slo section"
