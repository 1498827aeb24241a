"""Live: a real ``vllm serve --scheduler camel`` on the tiny model, emulated Orin, with both the
camel endpoint (``metrics_port``) and vLLM's merged ``/metrics`` (``PROMETHEUS_MULTIPROC_DIR``).
One engine start-up serves every check here (each costs ~30 s on 2 cores)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from camel_vllm.telemetry.metrics import ALL_METRICS
from tests.telemetry.test_metrics_helpers import (
    DASHBOARD,
    dashboard_exprs,
    families,
    fetch,
    metric_names,
    one,
    samples,
    total,
)
from camel_vllm.testing.vllm_server import completion, free_port, start_server

MAX_NUM_SEQS = 8
NUM_REQUESTS = 6
#: The multiprocess writer refreshes device readings and posteriors every 1 s (REFRESH_S).
REFRESH_WAIT_S = 2.5


#: The tests here share a module-scoped fixture: one xdist worker runs them all (scripts/test.sh
#: distributes with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_metrics_live")


@pytest.fixture(scope="module")
def live(tiny_model_dir, tmp_path_factory):
    """Run the server once; return what both endpoints said after the requests."""
    prom_dir = tmp_path_factory.mktemp("prom")  # fresh and empty: vLLM asks for a wiped folder
    camel_port = free_port()
    # A short warm-up, so that camel's model decides (and its belief series exist) within 6 requests.
    camel = {"camel": {"device": "emulated", "metrics_port": camel_port, "epoch_iterations": 4,
                       "policy_params": {"warmup_iterations": 8, "warmup_requests": 2}}}
    args = ["--scheduler", "camel", "--additional-config", json.dumps(camel), "--max-num-seqs", str(MAX_NUM_SEQS)]
    camel_url = f"http://127.0.0.1:{camel_port}/metrics"
    with start_server(tiny_model_dir, args, env={"PROMETHEUS_MULTIPROC_DIR": str(prom_dir)}) as server:
        before = fetch(camel_url)
        with ThreadPoolExecutor(max_workers=NUM_REQUESTS) as pool:
            replies = list(pool.map(lambda i: completion(server, f"Request {i}: the sky is", 12 + i),
                                    range(NUM_REQUESTS)))
        after = fetch(camel_url)
        time.sleep(REFRESH_WAIT_S)
        later = fetch(camel_url)
        merged = fetch(server.url + "/metrics")
        log = server.log()
    return {"before": before, "after": after, "later": later, "merged": merged, "replies": replies, "log": log,
            "prom_dir": prom_dir}


def _check_schema(text: str) -> None:
    found = families(text)
    for spec in ALL_METRICS:
        assert found.get(spec.name) == spec.type, spec.name


def test_camel_endpoint_names_labels_units(live):
    assert all(len(r["choices"][0]["text"]) > 0 for r in live["replies"])
    _check_schema(live["after"])
    got = samples(live["after"])
    info = one(got, "camel_controller_info")
    assert info.labels["emulated"] == "true" and info.labels["device"] == "emulated"
    assert info.labels["policy"] == "camel" and info.labels["profile"] == "orin-agx-32gb"
    assert one(got, "camel_energy_joules_total").labels == {"source": "emulated"}
    caps = {int(s.labels["max_batch"]) for s in got["camel_arm_selected"]}
    assert caps and max(caps) <= MAX_NUM_SEQS
    freqs = {s.labels["freq_mhz"] for s in got["camel_arm_selected"]}
    assert "930.75" in freqs and "306" in freqs  # the emulated AGX Orin 32GB's devfreq table
    assert one(got, "camel_batch_cap").value in caps
    assert sum(s.value for s in got["camel_arm_selected"]) == 1


def test_camel_endpoint_consistency(live):
    got = samples(live["after"])
    decisions = one(got, "camel_decisions_total").value
    assert decisions > 0 and total(got, "camel_arm_pulls_total") == decisions
    assert one(got, "camel_request_latency_seconds_count").value == NUM_REQUESTS
    assert total(got, "camel_arm_requests_total") == pytest.approx(NUM_REQUESTS)
    assert total(got, "camel_arm_energy_joules_total") == pytest.approx(
        one(got, "camel_request_energy_joules_sum").value)
    # the model-based policy learned from the engine's iterations and judged arms with its model
    assert one(got, "camel_model_iterations_total", kind="time").value >= 8
    assert one(got, "camel_model_iterations_total", kind="energy").value >= 8
    assert got["camel_arm_cost_mean"] and all(s.value == s.value for s in got["camel_arm_cost_mean"])
    energies = [one(samples(live[k]), "camel_energy_joules_total").value for k in ("before", "after", "later")]
    assert energies[0] <= energies[1] <= energies[2] and energies[2] > 0, energies


def test_vllm_metrics_merges_camel_series(live):
    merged_text = live["merged"]
    assert "vllm:" in merged_text  # vLLM's own series are still there
    _check_schema(merged_text)
    merged, own = samples(merged_text), samples(live["later"])
    decisions = one(merged, "camel_decisions_total").value
    assert decisions == one(own, "camel_decisions_total").value > 0
    assert total(merged, "camel_arm_pulls_total") == decisions
    assert one(merged, "camel_request_latency_seconds_count").value == NUM_REQUESTS
    assert one(merged, "camel_energy_joules_total", source="emulated").value > 0
    assert one(merged, "camel_controller_info").labels["emulated"] == "true"
    assert sum(s.value for s in merged["camel_arm_selected"]) == 1


def test_dashboard_queries_name_live_metrics(live):
    live_names = set(samples(live["after"]))
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text()))
    named = {n for e in exprs for n in metric_names(e) if n.startswith("camel_")}
    assert named and named <= live_names, sorted(named - live_names)
