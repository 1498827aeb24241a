"""Prometheus exporter: names, labels, units and consistency, scraped over HTTP from a real
controller (Thompson policy, emulated Orin); port conflicts; multiprocess files merged the way
vLLM's /metrics merges them; the Grafana dashboard names only metrics the exporter emits."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.core.events import format_mhz
from camel_vllm.telemetry.metrics import ALL_METRICS, MetricsExporter, exposed_sample_names
from camel_vllm.telemetry.metrics.schema import EDP_BUCKETS_JS, KNOWN_ERROR_KINDS, LATENCY_BUCKETS_S
from camel_vllm.testing.fake_device import FakeDevice
from tests.telemetry.test_metrics_helpers import (
    DASHBOARD,
    REPO,
    dashboard_exprs,
    drive,
    families,
    fetch,
    make_rig,
    metric_names,
    one,
    samples,
    total,
)

ARM_METRICS = ("camel_arm_pulls_total", "camel_arm_requests_total", "camel_arm_energy_joules_total",
               "camel_arm_cost_mean", "camel_arm_cost_std")


@pytest.fixture
def rig_exporter():
    """A real controller with an exporter serving on a free port; closed afterwards."""
    rig = make_rig()
    exporter = MetricsExporter.start(CamelConfig(metrics_port=0), rig.controller)
    rig.controller.listeners.append(exporter)
    yield rig, exporter
    rig.controller.close()


def scrape(exporter: MetricsExporter):
    return samples(fetch(exporter.url))


# ------------------------------------------------------------------ names and units
def test_every_family_has_the_type_and_name_the_schema_promises(rig_exporter):
    rig, exporter = rig_exporter
    drive(rig, 6)
    text = fetch(exporter.url)
    found = families(text)
    for spec in ALL_METRICS:
        assert found.get(spec.name) == spec.type, spec.name
        for name in spec.exposed_names:
            assert name in samples(text), name
    for name, kind in found.items():
        assert name.startswith("camel_")
        if kind == "counter":  # the parser strips _total from the family name
            assert name + "_total" in text
    # Units in names, base units only.
    assert {"camel_energy_joules", "camel_power_watts", "camel_gpu_frequency_hertz",
            "camel_request_latency_seconds", "camel_request_edp_joule_seconds"} <= set(found)
    assert not any(unit in text for unit in ("_mhz_", "_ms", "_millijoules", "_kj"))


def test_labels_units_and_values_agree_with_the_controller(rig_exporter):
    rig, exporter = rig_exporter
    drive(rig, 8)
    c = rig.controller
    got = scrape(exporter)
    arm_freqs = {format_mhz(a.freq_hz) for a in c.arms.arms}
    for name in ARM_METRICS:
        assert got[name], name
        for sample in got[name]:
            assert sample.labels["freq_mhz"] in arm_freqs
            assert int(sample.labels["max_batch"]) in c.arms.batch_sizes
            assert sample.labels["context"] == "all" or sample.labels["context"].isdigit()
    assert arm_freqs == {"306", "612", "930.75"}
    # The arm in force: exactly one selected series, and it is the controller's.
    selected = [s for s in got["camel_arm_selected"] if s.value == 1.0]
    assert len(selected) == 1 and len(got["camel_arm_selected"]) == len(c.arms)
    arm = c.current_arm
    assert selected[0].labels == {"freq_mhz": format_mhz(arm.freq_hz), "max_batch": str(arm.max_batch)}
    assert one(got, "camel_batch_cap").value == c.batch_cap
    assert one(got, "camel_gpu_frequency_hertz", kind="target").value == arm.freq_hz
    assert one(got, "camel_gpu_frequency_hertz", kind="current").value == c.device.current_frequency_hz()
    assert one(got, "camel_frequency_switches_total").value == c.frequency_switches
    # Energy and power carry the source; emulated figures say so.
    energy = one(got, "camel_energy_joules_total")
    assert energy.labels == {"source": "emulated"} and energy.value > 0
    assert one(got, "camel_power_watts", source="emulated").value > 0
    info = one(got, "camel_controller_info")
    assert info.value == 1.0
    assert info.labels["emulated"] == "true" and info.labels["device"] == "emulated"
    assert info.labels["policy"] == "camel" and info.labels["cost"] == "edp"
    assert info.labels["profile"] == "orin-agx-32gb" and info.labels["contextual"] == "true"
    for kind in KNOWN_ERROR_KINDS:
        assert one(got, "camel_device_errors_total", kind=kind).value == 0


def test_posterior_gauges_are_the_policy_estimates(rig_exporter):
    rig, exporter = rig_exporter
    drive(rig, 8)
    got = scrape(exporter)
    estimates = rig.controller.policy.estimates()
    assert len(got["camel_arm_cost_mean"]) == len(estimates)
    for est in estimates:
        arm = rig.controller.arms[est.arm_index]
        labels = dict(freq_mhz=format_mhz(arm.freq_hz), max_batch=str(arm.max_batch),
                      context="all" if est.context_id is None else str(est.context_id))
        assert one(got, "camel_arm_cost_mean", **labels).value == pytest.approx(est.mean)
        assert one(got, "camel_arm_cost_std", **labels).value == pytest.approx(est.std)


# -------------------------------------------------------------------- consistency
def test_pulls_sum_to_decisions_and_requests_to_finished(rig_exporter):
    rig, exporter = rig_exporter
    for _ in range(3):
        drive(rig, 5)
        got = scrape(exporter)
        decisions = one(got, "camel_decisions_total").value
        assert decisions == rig.controller.decisions > 0
        assert total(got, "camel_arm_pulls_total") == decisions
        for i, n in enumerate(rig.controller.pulls):  # per arm, summed over contexts
            arm = rig.controller.arms[i]
            assert total(got, "camel_arm_pulls_total", freq_mhz=format_mhz(arm.freq_hz),
                         max_batch=str(arm.max_batch)) == n
        # Fractional credit: a request's shares sum to 1, so the arm requests sum to the count.
        assert total(got, "camel_arm_requests_total") == pytest.approx(rig.finished)
        assert one(got, "camel_request_latency_seconds_count").value == rig.finished
        assert one(got, "camel_request_edp_joule_seconds_count").value == rig.finished
        energy_sum = one(got, "camel_request_energy_joules_sum").value
        assert total(got, "camel_arm_energy_joules_total") == pytest.approx(energy_sum)
        assert energy_sum == pytest.approx(sum(o.energy_j for o in rig.outcomes))
        assert one(got, "camel_request_edp_joule_seconds_sum").value == pytest.approx(
            sum(o.edp_js for o in rig.outcomes))
        # Attributed request energy never exceeds what the device counted (idle is extra).
        assert energy_sum <= one(got, "camel_energy_joules_total").value + 1e-9


def test_energy_counter_never_decreases_across_scrapes(rig_exporter):
    rig, exporter = rig_exporter
    seen = []
    for _ in range(4):
        drive(rig, 3)
        seen.append(one(scrape(exporter), "camel_energy_joules_total").value)
        rig.clock.t += 0.5  # idle: the emulated device books idle power
        seen.append(one(scrape(exporter), "camel_energy_joules_total").value)
    assert all(b > a for a, b in zip(seen, seen[1:], strict=False)), seen


def test_energy_counter_holds_when_the_device_counter_goes_back(rig_exporter):
    rig, exporter = rig_exporter
    drive(rig, 3)
    before = one(scrape(exporter), "camel_energy_joules_total").value
    device = rig.controller.device
    device._energy_j = 0.0  # a sensor reset
    assert one(scrape(exporter), "camel_energy_joules_total").value == before


def test_histogram_buckets_are_cumulative_and_documented(rig_exporter):
    rig, exporter = rig_exporter
    drive(rig, 6)
    got = scrape(exporter)
    for name, bounds in (("camel_request_latency_seconds", LATENCY_BUCKETS_S),
                         ("camel_request_edp_joule_seconds", EDP_BUCKETS_JS)):
        buckets = got[name + "_bucket"]
        les = [s.labels["le"] for s in buckets]
        assert les[-1] == "+Inf" and [float(x) for x in les[:-1]] == list(bounds)
        counts = [s.value for s in buckets]
        assert counts == sorted(counts) and counts[-1] == rig.finished
    for o in rig.outcomes:  # every latency lands at or below its bucket bound
        assert o.latency_s <= LATENCY_BUCKETS_S[-1]


# ------------------------------------------------------------------- errors, cases
def refusing_device(clock) -> FakeDevice:
    """Clock writes are refused (no root) and power reads fail; 5 W on the rig's clock."""
    return FakeDevice(refuse="permission", power_error=OSError("hwmon read failed"), clock=clock, idle_power_w=5.0)


def test_device_errors_and_unavailable_arms_are_counted():
    rig = make_rig(policy="static", policy_params={"arm": [306, 2]}, device=refusing_device)
    exporter = MetricsExporter.start(CamelConfig(metrics_port=0), rig.controller)
    rig.controller.listeners.append(exporter)
    try:
        drive(rig, 4)
        got = scrape(exporter)
        assert one(got, "camel_device_errors_total", kind="permission").value == 1
        assert one(got, "camel_device_errors_total", kind="read").value >= 1
        assert "camel_power_watts" not in got  # no value rather than a made-up one
        available = {(s.labels["freq_mhz"], s.labels["max_batch"]): s.value for s in got["camel_arm_available"]}
        assert available[("930.75", "2")] == 1.0 and available[("306", "2")] == 0.0
        assert one(got, "camel_arm_selected", freq_mhz="930.75", max_batch="2").value == 1.0
        assert one(got, "camel_frequency_switches_total").value == 0
    finally:
        rig.controller.close()


def test_steps_switched_for_their_work_are_counted():
    """An arm whose prefill steps run at the top clock: the controller switches up for each
    prefill step and back for the decode steps; the exporter counts exactly those switches."""
    rig = make_rig(policy="static", policy_params={"arm": [306, 4, 930.75]}, prefill_mhz=(930.75,))
    exporter = MetricsExporter.start(CamelConfig(metrics_port=0), rig.controller)
    rig.controller.listeners.append(exporter)
    try:
        assert one(scrape(exporter), "camel_step_clock_switches_total").value == 0
        drive(rig, 4)
        first = rig.controller.step_switches
        assert first >= 2  # up for the prefill, down for the decode steps
        assert one(scrape(exporter), "camel_step_clock_switches_total").value == first
        drive(rig, 4)
        assert rig.controller.step_switches > first
        assert one(scrape(exporter), "camel_step_clock_switches_total").value == rig.controller.step_switches
    finally:
        rig.controller.close()


def test_port_in_use_is_one_config_error_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        rig = make_rig()
        with pytest.raises(ConfigError) as err:
            MetricsExporter.start(CamelConfig(metrics_port=port), rig.controller)
    message = str(err.value)
    assert "\n" not in message
    assert err.value.key == "metrics_port" and err.value.value == port
    assert f"metrics_port={port}" in message and "already in use on 127.0.0.1" in message


def test_two_controllers_in_one_process_do_not_collide():
    a, b = make_rig(seed=1), make_rig(seed=2, batch_sizes=(3,))
    ea = MetricsExporter.start(CamelConfig(metrics_port=0), a.controller)
    eb = MetricsExporter.start(CamelConfig(metrics_port=0), b.controller)
    a.controller.listeners.append(ea)
    b.controller.listeners.append(eb)
    try:
        drive(a, 6)
        drive(b, 2)
        ga, gb = scrape(ea), scrape(eb)
        assert ea.port != eb.port
        assert one(ga, "camel_decisions_total").value == a.controller.decisions
        assert one(gb, "camel_decisions_total").value == b.controller.decisions
        assert {s.labels["max_batch"] for s in gb["camel_arm_selected"]} == {"3"}
        assert not any(n.startswith("camel_") for n in REGISTRY._names_to_collectors)  # no global registry
    finally:
        a.controller.close()
        b.controller.close()


def test_close_stops_the_server(rig_exporter):
    rig, exporter = rig_exporter
    url = exporter.url
    fetch(url)
    exporter.close()
    exporter.close()  # idempotent
    with pytest.raises(OSError):
        fetch(url)


# ------------------------------------------------------------------- multiprocess
def test_model_counts_are_counters_that_never_go_back(rig_exporter):
    """Issue 23: camel_model_iterations and camel_model_exploratory_decisions only go up, so they
    are counters (``_total``), set from the policy's running counts and never shown lower."""
    rig, exporter = rig_exporter
    drive(rig, 6)
    text = fetch(exporter.url)
    kinds = families(text)
    assert kinds["camel_model_iterations"] == kinds["camel_model_exploratory_decisions"] == "counter"
    got = samples(text)
    assert "camel_model_iterations" not in got and "camel_model_exploratory_decisions" not in got
    policy = rig.controller.policy
    readout = policy.model_readout()
    assert one(got, "camel_model_iterations_total", kind="time").value == readout.iterations["time"] > 0
    assert one(got, "camel_model_exploratory_decisions_total").value == policy.exploratory_decisions
    drive(rig, 6)
    later = scrape(exporter)
    assert one(later, "camel_model_iterations_total", kind="time").value > readout.iterations["time"]
    shown = one(later, "camel_model_exploratory_decisions_total").value
    policy.exploratory_decisions = -1  # a count that went back (it never should): the counter holds
    assert one(scrape(exporter), "camel_model_exploratory_decisions_total").value == shown


CHILD = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {repo!r})
    from camel_vllm.core.config import CamelConfig
    from camel_vllm.telemetry.metrics import MetricsExporter
    from tests.telemetry.test_metrics_helpers import drive, fetch, make_rig
    rig = make_rig()
    exporter = MetricsExporter.start(CamelConfig(metrics_port=0), rig.controller)
    rig.controller.listeners.append(exporter)
    drive(rig, 7)
    time.sleep(1.5)  # let the 1 s refresh write device energy and the posterior
    text = fetch(exporter.url)
    rig.controller.close()
    json.dump({{"text": text, "multiprocess": exporter.multiprocess, "decisions": rig.controller.decisions,
               "finished": rig.finished}}, sys.stdout)
""")


def test_multiprocess_files_merge_like_vllm_metrics(tmp_path):
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    out = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO))], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    child = json.loads(out.stdout)
    assert child["multiprocess"] is True
    assert any(p.name.startswith("counter_") for p in folder.iterdir())
    assert any(p.name.startswith("gauge_livemostrecent_") for p in folder.iterdir())

    # What vLLM's API server does for /metrics with PROMETHEUS_MULTIPROC_DIR set.
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    merged_text = generate_latest(registry).decode()
    merged, own = samples(merged_text), samples(child["text"])
    assert families(merged_text) == families(child["text"])  # same names and types
    decisions = one(merged, "camel_decisions_total").value
    assert decisions == child["decisions"] == one(own, "camel_decisions_total").value
    assert total(merged, "camel_arm_pulls_total") == decisions
    for name in ("camel_arm_pulls_total", "camel_arm_requests_total", "camel_arm_energy_joules_total",
                 "camel_request_latency_seconds_bucket", "camel_request_edp_joule_seconds_sum",
                 "camel_arm_cost_mean", "camel_arm_selected", "camel_controller_info",
                 "camel_model_iterations_total", "camel_model_exploratory_decisions_total"):
        want = {tuple(sorted(s.labels.items())): s.value for s in own[name]}
        got = {tuple(sorted(s.labels.items())): s.value for s in merged[name]}
        assert got.keys() == want.keys(), name
        for key, value in want.items():
            assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-12), (name, key)
    assert one(merged, "camel_request_latency_seconds_count").value == child["finished"]
    merged_energy = one(merged, "camel_energy_joules_total", source="emulated").value
    assert 0 < merged_energy <= one(own, "camel_energy_joules_total").value + 1e-9


# ---------------------------------------------------------------------- dashboard
def test_dashboard_loads_and_names_only_emitted_metrics(rig_exporter):
    rig, exporter = rig_exporter
    drive(rig, 6)
    emitted = set(scrape(exporter))
    assert emitted == set(exposed_sample_names())  # every schema series shows up in a scrape
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"DS_PROMETHEUS", "instance"} <= variables
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 8
    for expr in exprs:  # no promtool offline: at least brackets balance and selectors are closed
        for open_, close in ("()", "{}", "[]"):
            assert expr.count(open_) == expr.count(close), expr
        assert expr.count('"') % 2 == 0, expr
    named = set().union(*(metric_names(e) for e in exprs))
    camel = {n for n in named if n.startswith("camel_")}
    assert camel and camel <= emitted, sorted(camel - emitted)
    titles = " ".join(p.get("title", "") for p in dashboard["panels"]).lower()
    for needed in ("heatmap", "edp", "power", "frequency", "requests per arm"):
        assert needed in titles, needed
    for panel in dashboard["panels"]:
        if panel.get("type") != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_prometheus_scrape_config_names_both_endpoints():
    import yaml

    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"camel", "vllm"} <= set(jobs)
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job["static_configs"][0]["targets"]


def test_build_controller_starts_the_exporter_and_close_stops_it():
    from camel_vllm.wiring.build import EngineLimits, build_controller

    controller = build_controller(CamelConfig(device="emulated", metrics_port=0), EngineLimits(max_num_seqs=8))
    try:
        (exporter,) = [x for x in controller.listeners if isinstance(x, MetricsExporter)]
        got = scrape(exporter)
        assert one(got, "camel_controller_info").labels["model_profile"] == "llama-3.2-1b"
        assert {s.labels["max_batch"] for s in got["camel_arm_selected"]} == {"4", "8"}
        assert one(got, "camel_decisions_total").value == 0
    finally:
        controller.close()
    with pytest.raises(OSError):
        fetch(exporter.url)
