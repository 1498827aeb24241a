"""A bad camel config stops vLLM before anything is served, with one clear line.

``vllm serve`` checks everything while parsing (pure config, a frequency the emulated device
lacks, a batch size above an explicit ``--max-num-seqs`` or above the default the server will
pick) and exits. Python's ``LLM`` class parses nothing, so there the engine core checks the
batch sizes against the value vLLM resolved, prints the same kind of line and exits, after
which vLLM reports the failed start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from camel_vllm.testing.vllm_server import BASE_ENV, machine_lock, start_server

STARTUP_MARKERS = ("Application startup complete", "Uvicorn running", "Starting vLLM server")


def _run_bad(model_dir, tmp_path, args, launcher="camel-vllm"):
    with start_server(model_dir, args, launcher=launcher, log_dir=tmp_path, wait=False) as server:
        code = server.process.wait(timeout=600)
        log = server.log()
        with pytest.raises(OSError):  # nothing listens: nothing was served
            urllib.request.urlopen(server.url + "/health", timeout=2)
    return code, log


def _camel(**section):
    return ["--additional-config", json.dumps({"camel": section})]


@pytest.mark.parametrize(
    "extra, section, line",
    [
        ([], {"device": "emulated", "alpha": 1.5}, "camel config: alpha=1.5: must be a number in [0, 1]"),
        ([], {"device": "emulated", "frequencies_mhz": [612, 700]},
         "camel config: frequencies_mhz=[612, 700]: 700 MHz is not offered by device 'emulated'"),
        (["--max-num-seqs", "8"], {"device": "emulated", "batch_sizes": [4, 12]},
         "camel config: batch_sizes=[4, 12]: 12 is above --max-num-seqs 8"),
        # No --max-num-seqs: vllm serve on CPU defaults to 128 (EngineArgs.get_batch_defaults).
        ([], {"device": "emulated", "batch_sizes": [4, 200]},
         "camel config: batch_sizes=[4, 200]: 200 is above vLLM's default --max-num-seqs "
         "(at most 128 for vllm serve here)"),
        # These used to pass the API server and fail in the engine core, under vLLM's traceback (issue 15, item 5).
        ([], {"device": "emulated", "policy": "slo"},
         "camel config: slo=null: policy slo needs an slo section (metric, threshold_s, quantile)"),
        ([], {"device": "emulated", "policy": "epsilon", "policy_params": {"epsilon": 1.5}},
         "camel config: policy_params.epsilon=1.5: must be in [0, 1]"),
    ],
)
def test_bad_config_stops_api_server(tiny_model_dir, tmp_path, extra, section, line):
    code, log = _run_bad(tiny_model_dir, tmp_path, ["--scheduler", "camel", *extra, *_camel(**section)])
    assert code == 2
    output = log.splitlines()[1:]  # line 0 is the command
    matching = [out for out in output if out.startswith(line)]
    assert len(matching) == 1, log[-3000:]
    assert "Traceback" not in log
    assert not any(marker in log for marker in STARTUP_MARKERS)


LLM_CLASS_SCRIPT = """
import sys
from vllm import LLM
LLM(model=sys.argv[1], enforce_eager=True, max_model_len=2048, scheduler_cls="camel_vllm.CamelScheduler",
    additional_config={"camel": {"device": "emulated", "batch_sizes": [4, 300]}})
"""


def test_bad_batch_size_stops_engine_core(tiny_model_dir, tmp_path):
    # The LLM class resolves --max-num-seqs to 256 on CPU in the engine; nothing was parsed, so
    # the engine core is the first to see 300 and stops with the line before serving anything.
    with machine_lock():
        done = subprocess.run(
            [sys.executable, "-c", LLM_CLASS_SCRIPT, str(tiny_model_dir)], capture_output=True, text=True,
            env={**os.environ, **BASE_ENV}, timeout=600, cwd=str(tmp_path),
        )
    log = done.stdout + done.stderr
    assert done.returncode != 0
    lines = [line for line in log.splitlines() if line.startswith("camel config: ")]
    assert lines == ["camel config: batch_sizes=[4, 300]: 300 is above --max-num-seqs 256"], log[-3000:]
