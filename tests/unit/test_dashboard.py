"""The Grafana dashboard shipped in deploy/grafana plots metrics treadle really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import treadle.metrics as metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "treadle-dashboard.json"
_NAME = re.compile(r"\b((?:treadle|process|python)_[a-z_]+)\b")


def _exported() -> set[str]:
    """Every sample name treadle's processes can expose (registry + queue collector)."""
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 - test introspection
        for family in collector.describe() if hasattr(collector, "describe") else collector.collect():
            names.add(family.name)
            for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
                names.add(family.name + suffix)
    for family in metrics.QueueCollector().describe():
        names.add(family.name)
    return names


def _exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in data["panels"] for t in p.get("targets", [])]


def test_every_expression_names_an_exported_metric() -> None:
    exported = _exported()
    used = {name for expr in _exprs() for name in _NAME.findall(expr)}
    assert used, "the dashboard has no queries"
    missing = sorted(used - exported)
    assert not missing, f"the dashboard plots metrics nobody exports: {missing}"


def test_every_treadle_metric_is_on_the_dashboard() -> None:
    used = " ".join(_exprs())
    families = {n for n in _exported() if n.startswith("treadle_")
                and not n.endswith(("_bucket", "_sum", "_count", "_created"))}
    # a counter family is named without _total; its samples with it
    bases = {n.removesuffix("_total") for n in families}
    absent = sorted(b for b in bases if b not in used)
    assert not absent, f"metrics missing from the dashboard: {absent}"


def test_dashboard_is_importable() -> None:
    data = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    assert data["uid"] and data["title"]
    for panel in data["panels"]:
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
