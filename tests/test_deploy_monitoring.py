"""deploy/prometheus/alerts.yml and deploy/grafana/tgrelay.json, checked without promtool:
every expression parses as PromQL and names only series tgrelay exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import Metric

from tgrelay.observability import Metrics

DEPLOY = Path(__file__).parent.parent / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "tgrelay.json"
# The series names Prometheus gives each kind of metric family.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
# Grafana's interval variables, which PromQL itself does not know.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_)?interval")


def exported_series() -> set[str]:
    """The series names a fresh Metrics registry can export."""
    families: list[Metric] = list(Metrics().registry.collect())
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def series_in(expression: str) -> set[str]:
    """The metric names an expression selects (every vector selector must name one)."""
    names: list[str | None] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)

    promql_parser.walk(promql_parser.parse(expression), visit)
    assert None not in names, f"a selector without a metric name in {expression!r}"
    return {name for name in names if name is not None}


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    panels = list(document["panels"])
    found = []
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))  # rows may nest their panels
        found += [
            GRAFANA_INTERVALS.sub("5m", target["expr"]) for target in panel.get("targets", [])
        ]
    return found


def test_exported_series_include_the_suffixes_prometheus_adds() -> None:
    """The checker's own reference: counters get _total, histograms _bucket/_sum/_count."""
    series = exported_series()
    assert {
        "tgrelay_delivery_attempts_total",
        "tgrelay_delivery_latency_seconds_bucket",
        "tgrelay_processing_lag_seconds_count",
        "tgrelay_queue_oldest_due_age_seconds",
        "tgrelay_telegram_flood_waits_total",
        "tgrelay_telegram_turn_wait_seconds_sum",
    } <= series
    assert "tgrelay_delivery_attempts" not in series  # a counter's bare name is no series


def test_the_checker_refuses_a_metric_tgrelay_does_not_export() -> None:
    """A typo in a metric name is caught, and so is a selector with no name at all."""
    assert not series_in("rate(tgrelay_delivery_attempt_total[5m])") <= exported_series()
    with pytest.raises(AssertionError):
        series_in('{__name__=~"tgrelay_.*"}')


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_names_only_exported_series(rule: dict[str, Any]) -> None:
    """Each rule has its parts and an expression over tgrelay's series only."""
    assert set(rule) >= {"alert", "expr", "labels", "annotations"}
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"]
    used = series_in(rule["expr"])
    assert used, rule["expr"]
    assert used <= exported_series(), used - exported_series()


def test_alerts_cover_what_operators_are_paged_for() -> None:
    """Delivery failures, dead letters, open breakers, backlog age, 429s and processing lag."""
    used = set().union(*(series_in(rule["expr"]) for rule in alert_rules()))
    assert {
        "tgrelay_delivery_attempts_total",
        "tgrelay_delivery_dead_letters_total",
        "tgrelay_delivery_breakers_open",
        "tgrelay_queue_oldest_due_age_seconds",
        "tgrelay_telegram_flood_waits_total",
        "tgrelay_processing_lag_seconds_bucket",
    } <= used


def test_the_failure_ratio_alert_compares_ten_minutes_with_the_ten_before() -> None:
    """The trend alert: failure share now minus 10 minutes ago, above 5 points."""
    [rule] = [r for r in alert_rules() if r["alert"] == "TgrelayDeliveryFailureRatioRising"]
    parsed = promql_parser.parse(rule["expr"])
    assert isinstance(parsed, promql_parser.BinaryExpr)
    assert (str(parsed.op), str(parsed.rhs)) == (">", "0.05")
    assert "offset 10m" in str(parsed.lhs)


def test_each_dashboard_query_names_only_exported_series() -> None:
    """Every panel's query parses and reads tgrelay's series only; none is empty."""
    expressions = dashboard_expressions()
    assert len(expressions) >= 10
    for expression in expressions:
        used = series_in(expression)
        assert used, expression
        assert used <= exported_series(), (expression, used - exported_series())
