"""The Grafana dashboard against Grafana's own schema, and what its variables and panels mean.

- Valid against the JSON Schema of ``@grafana/schema`` 13.2.3's ``Dashboard`` kept in
  ``deploy/grafana/schema/`` (source, checksums and licence there), at the schemaVersion
  current Grafana writes.
- Context "All" on the posterior panel is the policy's pooled estimate (``context="all"``),
  not an average of the pooled series with the per-context ones: checked by applying the
  panel's selector, with Grafana's variable interpolation, to a real controller's scrape.
- Several engine instances: every per-arm panel sits in a row repeated per instance, and
  every other aggregate keeps ``instance`` (and says it in the legend).
- Counters and gauges: only counters (and histogram samples) go through ``rate()`` or
  ``increase()``, and a ratio never divides a gauge by a counter or a raw counter by a rate
  (issue 23: the exploration share divided a gauge by ``camel_decisions_total``).
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict

import jsonschema
import pytest

from camel_vllm.core.config import CamelConfig
from camel_vllm.telemetry.metrics import ALL_METRICS, MetricsExporter
from tests.telemetry.test_metrics_helpers import (
    DASHBOARD, REPO, dashboard_exprs, drive, fetch, make_rig, metric_names, samples,
)

SCHEMA_DIR = REPO / "deploy" / "grafana" / "schema"
SCHEMA = SCHEMA_DIR / "dashboard-13.2.3.schema.json"
#: The instance label Prometheus would attach to the scraped series.
INSTANCE = "orin-01.lan:9464"


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(dashboard: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(dashboard)]


def _variable(dashboard: dict, name: str) -> dict:
    return next(v for v in dashboard["templating"]["list"] if v["name"] == name)


def _panel(dashboard: dict, title_start: str) -> dict:
    return next(p for p in dashboard["panels"] if p.get("title", "").startswith(title_start))


# ------------------------------------------------------------------------- schema
def test_schema_in_the_repo_is_grafanas_dashboard_kind_with_its_provenance():
    source = json.loads((SCHEMA_DIR / "source.json").read_text())
    assert (source["package"], source["version"], source["licence"], source["type"]) == (
        "@grafana/schema", "13.2.3", "Apache-2.0", "Dashboard")
    assert "Apache License" in (SCHEMA_DIR / "LICENSE").read_text()
    schema = json.loads(SCHEMA.read_text())
    assert schema["$ref"] == "#/definitions/Dashboard"
    assert set(schema["definitions"]["VariableOption"]["required"]) >= {"text", "value"}
    assert schema["definitions"]["VariableModel"]["additionalProperties"] is False


def test_dashboard_validates_against_grafanas_schema():
    dashboard = _dashboard()
    assert _errors(dashboard) == []
    source = json.loads((SCHEMA_DIR / "source.json").read_text())
    assert dashboard["schemaVersion"] == source["default_schema_version"] == 42


@pytest.mark.parametrize("mutate,expect", [
    (lambda d: _variable(d, "instance").__setitem__("current", {}), "'text' is a required property"),
    (lambda d: _variable(d, "context").__setitem__("definition", "label_values(x, context)"),
     "'definition' was unexpected"),
    (lambda d: d.__setitem__("schemaVersion", "42"), "schemaVersion: '42' is not of type 'number'"),
    (lambda d: d["panels"][0].__setitem__("gridPos", {"x": 0}), "panels/0: "),
])
def test_the_schema_catches_what_the_issue_found(mutate, expect):
    """The validation can fail: the shapes the issue reported are errors under this schema."""
    broken = copy.deepcopy(_dashboard())
    mutate(broken)
    assert any(expect in e for e in _errors(broken)), _errors(broken)


# ------------------------------------------------------------------ context "All"
_SELECTOR_RE = re.compile(r"camel_arm_cost_mean\{([^}]*)\}")
_MATCHER_RE = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _interpolate(expr: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        expr = expr.replace(f"${name}", value)
    return expr


def _select(expr: str, series: list[dict[str, str]]) -> list[dict[str, str]]:
    """The series the (interpolated) camel_arm_cost_mean selector of ``expr`` matches (PromQL rules)."""
    body = _SELECTOR_RE.search(expr)
    assert body, expr
    matchers = _MATCHER_RE.findall(body.group(1))
    assert matchers, expr

    def ok(labels: dict[str, str]) -> bool:
        for name, op, value in matchers:
            got = labels.get(name, "")
            if op == "=" and got != value or op == "!=" and got == value:
                return False
            if op == "=~" and not re.fullmatch(value, got) or op == "!~" and re.fullmatch(value, got):
                return False
        return True

    return [s for s in series if ok(s)]


def _avg_by_arm(matched: list[dict[str, str]]) -> dict[tuple[str, str], float]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in matched:
        groups[(s["freq_mhz"], s["max_batch"])].append(float(s["__value__"]))
    return {k: sum(v) / len(v) for k, v in groups.items()}


@pytest.fixture
def scraped_posteriors():
    """camel_arm_cost_mean series of a real contextual controller, as Prometheus stores them
    (camel-ts: per-context posteriors beside the pooled one; camel's projections are pooled)."""
    rig = make_rig(policy="camel-ts")
    exporter = MetricsExporter.start(CamelConfig(metrics_port=0), rig.controller)
    rig.controller.listeners.append(exporter)
    try:
        for n in (1, 6, 2, 5, 3):  # bursts of several sizes: several load contexts get data
            drive(rig, n)
        found = samples(fetch(exporter.url))["camel_arm_cost_mean"]
    finally:
        rig.controller.close()
    return [{**s.labels, "instance": INSTANCE, "__value__": repr(s.value)} for s in found]


def test_context_all_is_the_pooled_estimate_not_an_average_with_contexts(scraped_posteriors):
    dashboard = _dashboard()
    ctx = _variable(dashboard, "context")
    contexts = {s["context"] for s in scraped_posteriors}
    assert "all" in contexts and len(contexts - {"all"}) >= 2, contexts  # pooled plus several contexts
    # The variable's regex keeps every context id and drops the pooled "all" from the options.
    pattern = re.compile(ctx["regex"].strip("/"))
    assert {c for c in contexts if pattern.search(c)} == contexts - {"all"}
    assert ctx["includeAll"] and not ctx["multi"] and ctx["current"]["value"] == "$__all"
    expr = _panel(dashboard, "Arm heatmap: posterior mean")["targets"][0]["expr"]
    instance_all = _variable(dashboard, "instance")["allValue"]
    pooled = {(s["freq_mhz"], s["max_batch"]): float(s["__value__"]) for s in scraped_posteriors
              if s["context"] == "all"}
    # "All": Grafana puts the variable's allValue where $context stands.
    shown = _avg_by_arm(_select(_interpolate(expr, {"instance": instance_all, "context": ctx["allValue"]}),
                                scraped_posteriors))
    assert shown == pytest.approx(pooled) and shown.keys() == pooled.keys()
    # What the issue saw: with allValue ".*" the same query averages pooled and per-context series.
    mixed = _avg_by_arm(_select(_interpolate(expr.replace('context="$context"', 'context=~"$context"'),
                                             {"instance": instance_all, "context": ".*"}), scraped_posteriors))
    assert mixed != pytest.approx(pooled)
    # One context chosen: exactly that context's series.
    for context in contexts - {"all"}:
        matched = _select(_interpolate(expr, {"instance": INSTANCE, "context": context}), scraped_posteriors)
        assert matched and {s["context"] for s in matched} == {context}


# ---------------------------------------------------------------- several instances
_AGG_RE = re.compile(r"\b(sum|avg|min|max|count)\s*(?:by\s*\(([^)]*)\))?\s*\(")


def _sections(dashboard: dict):
    """(panel, row it sits in or None) for every non-row panel, in dashboard order."""
    row = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            row = panel
            for inner in panel.get("panels", []):  # collapsed rows keep their panels inside
                yield inner, panel
            continue
        yield panel, row


def test_per_arm_panels_repeat_per_instance_and_other_sums_keep_the_instance():
    dashboard = _dashboard()
    instance = _variable(dashboard, "instance")
    assert instance["multi"] and instance["includeAll"]
    per_arm = 0
    for panel, row in _sections(dashboard):
        exprs = [t["expr"] for t in panel.get("targets", [])]
        repeated = row is not None and row.get("repeat") == "instance"
        if any("freq_mhz" in e for e in exprs):  # a per-arm panel
            assert repeated, f"{panel['title']}: per-arm panel outside the row repeated per instance"
            assert "$instance" in row["title"]
            per_arm += 1
            continue
        for target in panel.get("targets", []):
            for _agg, by in _AGG_RE.findall(target["expr"]):
                assert by and "instance" in [b.strip() for b in by.split(",")], (panel["title"], target["expr"])
            if target.get("format") == "time_series":
                assert "{{instance}}" in target["legendFormat"], (panel["title"], target["legendFormat"])
    assert per_arm == 5  # pulls and posterior heatmaps, decisions over time, requests and energy per arm


# -------------------------------------------------------------- counters and gauges
#: Exposed sample name -> "counter" (counter and histogram samples: they only go up) or "gauge".
_KIND = {name: "gauge" if spec.type == "gauge" else "counter" for spec in ALL_METRICS for name in spec.exposed_names}
_RATE_RE = re.compile(r"\b(?:rate|increase|irate)\s*\(\s*(\w+)")


def _ratio_problems(expr: str) -> list[str]:
    """What is wrong with how ``expr`` reads counters: a gauge under rate(), and a division
    whose sides are not both gauges or both rates of counters."""
    problems = [f"rate() of the gauge {n}" for n in _RATE_RE.findall(expr) if _KIND.get(n) == "gauge"]
    if " / " in expr:
        sides = expr.split(" / ")
        kinds = [{_KIND[n] for n in metric_names(side) if n in _KIND} for side in sides]
        rated = [bool(_RATE_RE.search(side)) for side in sides]
        if any(k == {"gauge"} for k in kinds) and any("counter" in k for k in kinds):
            problems.append("divides a gauge by a counter")
        elif any("counter" in k for k in kinds) and not all(rated):
            problems.append("divides a raw counter")
    return problems


def test_counters_are_read_through_rate_and_ratios_compare_like_with_like():
    for expr in dashboard_exprs(_dashboard()):
        assert _ratio_problems(expr) == [], expr
    share = next(t["expr"] for t in _panel(_dashboard(), "Model error and exploration")["targets"]
                 if "exploratory" in t["expr"])
    assert "rate(camel_model_exploratory_decisions_total" in share and "rate(camel_decisions_total" in share
    # The check can fail: the panel as the issue found it, and a rate of a gauge.
    assert _ratio_problems('sum by (instance) (camel_model_exploratory_decisions{instance=~"$i"}) / '
                           'sum by (instance) (camel_decisions_total{instance=~"$i"})') != []
    assert _ratio_problems('rate(camel_power_watts{instance=~"$i"}[5m])') == ["rate() of the gauge camel_power_watts"]
