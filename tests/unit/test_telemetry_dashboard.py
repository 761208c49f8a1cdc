"""The Grafana dashboard in deploy/: valid JSON, a sane layout, and only real metric names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.telemetry.metrics import METRIC_NAMES

__all__: list[str] = []

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "keyway-dashboard.json"
HISTOGRAMS = {
    "keyway_request_duration_seconds",
    "keyway_time_to_first_token_seconds",
    "keyway_redis_script_duration_seconds",
}
NAME = re.compile(r"\b(?:keyway|proxy)_[a-z_]+\b")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = msgspec.json.decode(DASHBOARD.read_bytes())
    return loaded


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def family(series: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        base = series.removesuffix(suffix)
        if base != series and base in HISTOGRAMS:
            return base
    return series


def test_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "keyway-gateway"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job"} <= variables


def test_every_expression_names_an_exposed_metric(dashboard: dict[str, Any]) -> None:
    found = exprs(dashboard)
    assert found
    used: set[str] = set()
    for expr in found:
        names = NAME.findall(expr)
        assert names, expr
        for series in names:
            assert family(series) in METRIC_NAMES, (series, expr)
            used.add(family(series))
    # every family has a panel, except the predecessor's alias
    assert set(METRIC_NAMES) - used == {"proxy_requests_total"}


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells
