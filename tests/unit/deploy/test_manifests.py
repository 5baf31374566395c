"""The deploy manifests, rendered and checked offline: every overlay renders with
`kubectl kustomize` and each object validates against the Kubernetes schemas; the
PrometheusRule is config/alerts.yaml; probes point at the gateway's real paths and port; the
grace period covers the drain; the configs in them are valid gateway configs; the compose
file resolves and mounts only files that exist."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from policies.loader import parse_config
from tests.support.processes import ROOT

KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["demo", "production"]
KUBERNETES = "1.31"
CUSTOM = {"PrometheusRule", "ServiceMonitor"}  # CRDs of the Prometheus operator
ENV = {
    "POSTGRES_PASSWORD": "p",
    "OPENAI_API_KEY": "o",
    "ANTHROPIC_API_KEY": "a",
    "SPILLOVER_APP_KEY": "k",
    "SPILLOVER_ADMIN_KEY": "ka",
}


def render(overlay: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: it renders the Kustomize overlays")
    out = subprocess.run(
        ["kubectl", "kustomize", str(KUBE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    objects = render(overlay)
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= {
        o["kind"] for o in objects
    }
    for obj in objects:
        if obj["kind"] in CUSTOM:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_is_wired_as_the_config_says(overlay: str) -> None:
    objects = render(overlay)
    config_map = find(objects, "ConfigMap", "spillover-config")
    config = parse_config(config_map["data"]["spillover.yaml"], f"{overlay}.yaml", ENV)
    pod = find(objects, "Deployment", "spillover")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == config.server.port
    paths = {"/health/live", "/health/ready"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    needed = pre_stop + config.server.drain_s + config.server.graceful_shutdown_s
    assert pod["terminationGracePeriodSeconds"] > needed
    # The whole directory is mounted (a subPath never sees ConfigMap updates: no reload).
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert "subPath" not in mount and mount["mountPath"] == "/etc/spillover"
    assert not config_map["metadata"]["name"].endswith(tuple("0123456789"))  # no hash suffix
    # The pool's discovery reads the headless Service's name.
    service = find(objects, "Service", "vllm-pool")
    assert service["spec"]["clusterIP"] == "None"
    pool = config.providers["pool"]
    assert pool.kind == "vllm_pool" and pool.discover is not None
    assert pool.discover.dns == "vllm-pool"
    assert pool.discover.port == service["spec"]["ports"][0]["port"]


def test_the_prometheus_rule_is_the_repositorys_alerts() -> None:
    rule = find(render("production"), "PrometheusRule", "spillover")
    alerts = yaml.safe_load((ROOT / "config" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    check = subprocess.run(
        [sys.executable, "scripts/build_manifests.py", "--check"], cwd=ROOT, capture_output=True
    )
    assert check.returncode == 0, check.stderr


def test_the_dashboard_config_map_is_the_repositorys_dashboard() -> None:
    config_map = find(render("production"), "ConfigMap", "spillover-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((ROOT / "config" / "grafana" / "spillover.json").read_text())
    assert json.loads(config_map["data"]["spillover.json"]) == shipped


def test_the_compose_file_resolves_and_mounts_what_exists(tmp_path: Path) -> None:
    compose = ROOT / "deploy" / "compose.yaml"
    # `config` only resolves the file; podman-compose asks podman its version first, so where
    # podman is not installed a stand-in answers that (no container is ever run here).
    podman = shutil.which("podman")
    if podman is None:
        podman = str(tmp_path / "podman")
        Path(podman).write_text("#!/bin/sh\necho 'podman version 4.3.1'\n")
        Path(podman).chmod(0o755)
    command = ["--podman-path", podman, "-f", str(compose), "config"]
    resolved = subprocess.run(
        [sys.executable, "-m", "podman_compose", *command],
        cwd=compose.parent,
        capture_output=True,
        text=True,
        env={**os.environ, "PODMAN_COMPOSE_WARNING_LOGS": "false"},
    )
    assert resolved.returncode == 0, resolved.stderr[-2000:]
    spec = yaml.safe_load(resolved.stdout)
    services = spec["services"]
    assert {"gateway", "lb", "redis", "postgres", "prometheus", "grafana"} <= set(services)
    for service in services.values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (compose.parent / source).exists(), source
    config = (compose.parent / "compose" / "spillover.yaml").read_text()
    parse_config(config, "compose/spillover.yaml", ENV)


def _with_components(tmp_path: Path, *names: str) -> list[dict[str, Any]]:
    """The production overlay with more components, rendered."""
    folder = tmp_path / "overlay"
    folder.mkdir()
    here = os.path.relpath(KUBE, folder)  # kustomize takes no absolute paths
    components = [f"{here}/components/{n}" for n in ("vllm-pool", *names)]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{here}/base"], "components": components,
    }))  # fmt: skip
    out = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(folder)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_the_pool_scales_on_the_desired_replicas_with_an_hpa(tmp_path: Path) -> None:
    objects = _with_components(tmp_path, "vllm-pool-hpa")
    hpa = find(objects, "HorizontalPodAutoscaler", "vllm-pool")
    kubernetes_validate.validate(hpa, KUBERNETES, strict=True)
    pool = find(objects, "Deployment", "vllm-pool")
    assert hpa["spec"]["scaleTargetRef"]["name"] == pool["metadata"]["name"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "spillover_pool_desired_replicas"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    config_map = find(objects, "ConfigMap", "spillover-config")
    config = parse_config(config_map["data"]["spillover.yaml"], "base.yaml", ENV)
    assert metric["external"]["metric"]["selector"]["matchLabels"]["pool"] in config.providers


def test_the_pool_scales_on_the_desired_replicas_with_keda(tmp_path: Path) -> None:
    objects = _with_components(tmp_path, "vllm-pool-keda")
    scaled = find(objects, "ScaledObject", "vllm-pool")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert (
        scaled["spec"]["scaleTargetRef"]["name"]
        == find(objects, "Deployment", "vllm-pool")["metadata"]["name"]
    )
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "1"
    query = trigger["metadata"]["query"]
    assert "spillover_pool_desired_replicas" in query and query.startswith("max(")
    config_map = find(objects, "ConfigMap", "spillover-config")
    config = parse_config(config_map["data"]["spillover.yaml"], "base.yaml", ENV)
    assert query.split('pool="')[1].split('"')[0] in config.providers
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
