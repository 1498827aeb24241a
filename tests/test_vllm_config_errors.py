"""A bad camel config stops ``vllm serve`` before anything is served, with one clear line.

Checks the API server can make (pure config, a frequency the emulated device lacks, a batch
size above an explicit ``--max-num-seqs`` or above any default vLLM could pick) exit while
parsing; a batch size above vLLM's *default in force* but within that bound is only known in
the engine core, which prints the same kind of line and exits, after which vLLM reports the
failed start.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.vllm_server import start_server

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
        ([], {"device": "emulated", "batch_sizes": [4, 4096]},
         "camel config: batch_sizes=[4, 4096]: 4096 is above vLLM's default --max-num-seqs (at most "),
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


def test_bad_batch_size_stops_engine_core(tiny_model_dir, tmp_path):
    # No --max-num-seqs: vLLM resolves its default (128 on CPU for a server) in the engine. 200 is
    # within the largest default any usage context could get (256 on CPU), so the API server lets
    # it through and the engine core checks it against the value in force.
    code, log = _run_bad(
        tiny_model_dir, tmp_path,
        ["--scheduler-cls", "camel_vllm.CamelScheduler", *_camel(device="emulated", batch_sizes=[4, 200])],
        launcher="api-server",
    )
    assert code != 0
    assert "camel config: batch_sizes=[4, 200]: 200 is above --max-num-seqs 128" in log
    assert not any(marker in log for marker in ("Application startup complete", "Uvicorn running"))
