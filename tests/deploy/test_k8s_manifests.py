"""The kustomize overlays build, pass strict schema validation, and describe a coherent system."""

from __future__ import annotations

import base64
import copy
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.config import hash_api_key, parse_settings
from tests.harness import SimProcess, wait_until

from .crd_schemas import SCHEMAS
from .tools import OVERLAYS

Obj = dict[str, Any]
# The oldest Kubernetes release the manifests support, and the newest schema set bundled.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
GATEWAY = {"app.kubernetes.io/name": "switchyard", "app.kubernetes.io/component": "gateway"}


def validate(obj: Obj, version: str) -> None:
    """Strict validation: built-in kinds by kubernetes-validate, operator kinds by our CRD schemas."""
    if obj["kind"] in SCHEMAS:
        jsonschema.Draft202012Validator(SCHEMAS[obj["kind"]]).validate(obj)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = find(objects, kind, name)
    return found


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_specs(objects: list[Obj]) -> list[tuple[str, Obj, dict[str, str]]]:
    """(workload name, pod spec, pod labels) of every Deployment and StatefulSet."""
    templates = [(o["metadata"]["name"], o["spec"]["template"]) for o in objects
                 if o["kind"] in ("Deployment", "StatefulSet")]
    return [(name, template["spec"], template["metadata"]["labels"]) for name, template in templates]


def gateway_config(objects: list[Obj], monkeypatch: pytest.MonkeyPatch) -> Any:
    (config_map,) = [o for o in find(objects, "ConfigMap")
                     if o["metadata"]["name"].startswith("switchyard-config")]
    monkeypatch.setenv("SWITCHYARD_API_KEY_HASH", hash_api_key("test-key"))
    monkeypatch.setenv("SWITCHYARD_REDIS_PASSWORD", "test-password")
    return parse_settings(yaml.safe_load(config_map["data"]["config.yaml"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_system(rendered: dict[str, list[Obj]], overlay: str) -> None:
    kinds = {o["kind"] for o in rendered[overlay]}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy", "PersistentVolumeClaim", "ServiceMonitor", "PodMonitor",
            "PrometheusRule"} <= kinds
    namespaced = [o for o in rendered[overlay] if o["kind"] != "Namespace"]
    assert all(o["metadata"].get("namespace") == "switchyard" for o in namespaced)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_passes_strict_validation(
        rendered: dict[str, list[Obj]], overlay: str, version: str) -> None:
    for obj in rendered[overlay]:
        try:
            validate(obj, version)
        except (jsonschema.ValidationError, kubernetes_validate.utils.SchemaNotFoundError) as error:
            message = getattr(error, "message", str(error))
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            pytest.fail(f"{overlay}: {name} invalid for Kubernetes {version}: {message}")


def test_validation_rejects_misspelt_fields(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered[OVERLAYS[0]]
    deployment = copy.deepcopy(one(objects, "Deployment", "switchyard-gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/ready"}}
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment, K8S_VERSIONS[-1])
    monitor = copy.deepcopy(find(objects, "ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, K8S_VERSIONS[-1])
    rule = copy.deepcopy(find(objects, "PrometheusRule")[0])
    rule["spec"]["groups"][1]["rules"][0]["for"] = "5 minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule, K8S_VERSIONS[-1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_deployment_is_replicated_and_probed(rendered: dict[str, list[Obj]], overlay: str) -> None:
    deployment = one(rendered[overlay], "Deployment", "switchyard-gateway")
    assert "replicas" not in deployment["spec"], "the HPA owns the count: an apply must not reset it"
    assert one(rendered[overlay], "HorizontalPodAutoscaler", "switchyard-gateway")["spec"]["minReplicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["args"][:3] == ["serve", "--config", "/etc/switchyard/config.yaml"]
    assert ":" in container["image"], "the overlay pins the gateway image tag"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for name, spec, _ in pod_specs(rendered[overlay]):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
            assert "memory" in container["resources"]["limits"], name
            assert "readinessProbe" in container and "livenessProbe" in container, name
            assert ":" in container["image"], f"{name}: image without a pinned tag"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_route_to_named_container_ports(rendered: dict[str, list[Obj]], overlay: str) -> None:
    pods = pod_specs(rendered[overlay])
    for service in find(rendered[overlay], "Service"):
        matched = [spec for _, spec, labels in pods if selects(service["spec"]["selector"], labels)]
        assert matched, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            for spec in matched:
                names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
                assert port["targetPort"] in names, service["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_reaches_backends_and_redis(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """Evaluate the NetworkPolicies for every pair of workloads in the namespace."""
    policies = find(rendered[overlay], "NetworkPolicy")
    workloads = pod_specs(rendered[overlay])

    def admits(source: dict[str, str], target: dict[str, str]) -> bool:
        governing = [p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], target)
                     and "Ingress" in p["spec"]["policyTypes"]]
        if not governing:
            return True
        # A rule without `from` admits every source.
        peers = [peer for p in governing for rule in p["spec"].get("ingress", [])
                 for peer in rule.get("from", [{"podSelector": {"matchLabels": {}}}])]
        pod_peers = [peer["podSelector"]["matchLabels"] for peer in peers if "podSelector" in peer]
        return any(selects(selector, source) for selector in pod_peers)

    protected = [(n, labels) for n, _, labels in workloads if not selects(GATEWAY, labels)]
    assert {labels["app.kubernetes.io/name"] for _, labels in protected} == {"redis", "vllm"}
    for target_name, target in protected:
        for source_name, _, source in workloads:
            if source_name != target_name:
                assert admits(source, target) == selects(GATEWAY, source), f"{source_name} -> {target_name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_and_disruption_budget(rendered: dict[str, list[Obj]], overlay: str) -> None:
    hpa = one(rendered[overlay], "HorizontalPodAutoscaler", "switchyard-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "switchyard-gateway"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "switchyard_in_flight_requests"
    pdb = one(rendered[overlay], "PodDisruptionBudget", "switchyard-gateway")
    assert pdb["spec"]["selector"]["matchLabels"] == GATEWAY
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_config_is_valid_and_points_at_rendered_services(
        rendered: dict[str, list[Obj]], overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = rendered[overlay]
    settings = gateway_config(objects, monkeypatch)
    services = {s["metadata"]["name"]: s for s in find(objects, "Service")}
    deployments = pod_specs(objects)
    for backend in settings.backends:
        for url in backend.replicas:
            service = services[url.host]
            assert url.port in [p["port"] for p in service["spec"]["ports"]]
            # discovery reads every pod's address from the name: only a headless Service gives them
            assert (backend.discovery == "dns") == (service["spec"].get("clusterIP") == "None")
            (args,) = [spec["containers"][0]["args"] for _, spec, labels in deployments
                       if selects(service["spec"]["selector"], labels)]
            assert f"--served-model-name={backend.model}" in args
    redis = urlsplit(settings.cache.redis_url)
    assert settings.cache.redis_password == "test-password"
    assert redis.hostname in services and redis.port == services[redis.hostname]["spec"]["ports"][0]["port"]
    assert {"/health", "/ready", "/metrics"} <= set(settings.auth.public_paths)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_volumes_refer_to_rendered_objects(rendered: dict[str, list[Obj]], overlay: str) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered[overlay]}
    for workload, spec, _ in pod_specs(rendered[overlay]):
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, workload
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names, workload


def secret_refs(objects: list[Obj]) -> set[tuple[str, str]]:
    return {(env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
            for _, spec, _ in pod_specs(objects) for c in spec["containers"] for env in c.get("env", [])
            if "secretKeyRef" in env.get("valueFrom", {})}


def test_dev_overlay_generates_the_secret_it_documents(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["dev"]
    (secret,) = find(objects, "Secret")
    name = secret["metadata"]["name"]
    assert secret_refs(objects) == {(name, "api-key-hash"), (name, "redis-password")}
    stored = base64.b64decode(secret["data"]["api-key-hash"]).decode()
    assert stored == hash_api_key("sk-switchyard-dev")


def test_gpu_overlay_expects_an_external_secret_and_requests_gpus(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["gpu"]
    assert not find(objects, "Secret"), "production secrets never live in git"
    assert {name for name, _ in secret_refs(objects)} == {"switchyard-secrets"}
    backends = [(n, spec) for n, spec, labels in pod_specs(objects)
                if labels.get("app.kubernetes.io/component") == "backend"]
    assert len(backends) >= 2
    for name, spec in backends:
        resources = spec["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == "1", name
    dev_resources = [c["resources"] for _, spec, _ in pod_specs(rendered["dev"]) for c in spec["containers"]]
    assert not any("nvidia.com/gpu" in r.get("limits", {}) for r in dev_resources)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitors_scrape_the_gateway_and_every_backend_pod(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    (service_monitor,) = find(objects, "ServiceMonitor")
    services = [s for s in find(objects, "Service")
                if selects(service_monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in services] == ["switchyard"]
    assert service_monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in services[0]["spec"]["ports"]]
    (pod_monitor,) = find(objects, "PodMonitor")
    scraped = {name: spec for name, spec, labels in pod_specs(objects)
               if selects(pod_monitor["spec"]["selector"]["matchLabels"], labels)}
    backends = {name for name, _, labels in pod_specs(objects) if labels["app.kubernetes.io/name"] == "vllm"}
    assert set(scraped) == backends
    port = pod_monitor["spec"]["podMetricsEndpoints"][0]["port"]
    assert all(port in [p["name"] for p in spec["containers"][0]["ports"]] for spec in scraped.values())


def backend_pods(objects: list[Obj]) -> list[tuple[str, Obj]]:
    return [(name, spec) for name, spec, labels in pod_specs(objects)
            if labels.get("app.kubernetes.io/component") == "backend"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_backend_pod_drains_before_it_stops(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for name, spec in backend_pods(rendered[overlay]):
        (container,) = spec["containers"]
        assert container["lifecycle"]["preStop"]["exec"]["command"][:2] == ["python3", "-c"], name
        assert spec["terminationGracePeriodSeconds"] >= 300, name
        assert spec["enableServiceLinks"] is False, f"{name}: VLLM_* Service variables would reach vLLM"


def test_the_drain_waits_until_vllm_has_no_request_under_way(rendered: dict[str, list[Obj]]) -> None:
    """The backends' pre-stop script, run against a simulated vLLM (its 15 s wait for DNS left out) while an
    answer of about 4 s is being written: it returns only once that answer is done."""
    _, spec = backend_pods(rendered["dev"])[0]
    script = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][2]
    assert "time.sleep(15)" in script and "127.0.0.1:8000" in script
    sim = SimProcess("m", tokens_per_s=10).start()
    try:
        script = script.replace("time.sleep(15)", "pass").replace("127.0.0.1:8000", f"127.0.0.1:{sim.port}")
        statuses: list[int] = []
        body = {"model": "m", "prompt": "x", "max_tokens": 40}
        worker = threading.Thread(target=lambda: statuses.append(
            httpx.post(sim.url + "/v1/completions", json=body, timeout=30).status_code))
        worker.start()
        wait_until(lambda: sim.last_request()["running"] == 1, what="the answer under way")
        assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 0
        assert sim.last_request()["running"] == 0, "the drain returned while an answer was being written"
        worker.join()
        assert statuses == [200]
    finally:
        sim.kill()
