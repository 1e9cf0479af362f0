"""deploy/: the alert rules, the Grafana dashboard and the compose services name only metrics
the API and the worker export, and cover the seed's SLOs. `promtool` and `docker-compose`
check them too where they are installed."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from prometheus_client import REGISTRY

import web.app  # noqa: F401  (and the API's)
import worker  # noqa: F401  (imports every module that defines metrics, as the worker does)
from vaporform import metrics
from vaporform.worker_metrics import TEMPORAL_FAMILIES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "vaporform.json"
# A metric, not a recording rule (those have colons) nor a label.
METRIC = re.compile(r"(?<![\w:])((?:vaporform|temporal)_[a-z0-9_]+)")
RECORDED = re.compile(r"(?<![\w])(vaporform:[a-z0-9_:]+)")
SLOS = {
    "api-p95-200ms",
    "websocket-p95-50ms",
    "container-start-10s",
    "api-errors-1pct",
    "workflow-failures-5pct",
}


def _samples(name: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    if kind == "counter":
        return {f"{name}_total"}
    return {name}


def exported() -> set[str]:
    """Every sample name our metrics and the SDK families we rely on can show."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= _samples(family.name, family.type)
    names |= _samples(metrics.CONTAINER_START, "histogram")
    for sdk in TEMPORAL_FAMILIES:
        names |= _samples(sdk, "histogram" if sdk.endswith("_latency") else "counter")
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    found: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend(t["expr"] for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def test_the_rules_cover_the_slos() -> None:
    found = rules()
    alerts = [r for r in found if "alert" in r]
    assert {r["labels"].get("slo") for r in alerts} >= SLOS
    for rule in alerts:
        assert rule["labels"]["severity"] in ("page", "warning", "info"), rule
        assert rule["annotations"]["summary"], rule
    for rule in found:
        assert ("alert" in rule) != ("record" in rule), rule
        assert rule["expr"].strip(), rule
    thresholds = {r["labels"].get("slo"): r["expr"] for r in alerts}
    assert thresholds["api-p95-200ms"].endswith("> 0.2")
    assert thresholds["websocket-p95-50ms"].endswith("> 0.05")
    assert thresholds["container-start-10s"].endswith("> 10")


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    known = exported()
    recorded = {r["record"] for r in rules() if "record" in r}
    exprs = [r["expr"] for r in rules()] + dashboard_exprs()
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used, "no metric found in the rules"
    assert used <= known, sorted(used - known)
    assert {name for expr in exprs for name in RECORDED.findall(expr)} <= recorded
    # The SLO histograms are among them.
    assert {
        "vaporform_http_request_duration_seconds_bucket",
        "vaporform_collab_message_duration_seconds_bucket",
        f"{metrics.CONTAINER_START}_bucket",
        "temporal_workflow_failed_total",
    } <= used


def test_the_dashboard_uses_the_provisioned_datasource() -> None:
    board = json.loads(DASHBOARD.read_text())
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    uids = {t["datasource"]["uid"] for p in board["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_compose_runs_prometheus_and_grafana_on_loopback() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), service
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert set(jobs) == {"vaporform-api", "vaporform-worker"}
    assert all(job["authorization"]["type"] == "Bearer" for job in jobs.values())
    assert services["worker"]["environment"]["VAPORFORM_WORKER_METRICS_HOST"] == "0.0.0.0"


# .ci/run installs both tools (Debian's prometheus and docker-compose): missing, they fail.
def test_promtool_accepts_the_rules() -> None:
    subprocess.run(["promtool", "check", "rules", str(RULES)], check=True)


def test_docker_compose_accepts_the_file() -> None:
    secrets = {"VAPORFORM_JWT_SECRET": "x" * 40, "VAPORFORM_S3_SECRET_ACCESS_KEY": "y" * 32}
    env = {**os.environ, **secrets}
    subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        check=True,
        env=env,
    )
