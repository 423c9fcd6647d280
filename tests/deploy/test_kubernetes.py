"""deploy/kubernetes: every manifest valid against the Kubernetes schemas (kubernetes-validate
bundles them: no cluster, no kubectl, no download), and what the operators' checklist
asks of it: probes, resources, non-root, read-only root filesystem, secrets only in the
Secret, a replica-set connection string, 3 to 15 replicas at 65% CPU, a disruption
budget, and settings the server accepts."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml

from fhir_server.core.config import Settings
from tests.support.store import ROOT

MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes still in common support, and the newest the validator knows.
VERSIONS = ("1.30.0", "1.37.0")
OTEL_STANDARD = {"OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
                 "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_HEADERS"}
SECRET_SETTINGS = {"MONGODB_URI"}


def documents() -> dict[str, dict[str, Any]]:
    """kind -> the manifest of that kind (one each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"two {doc['kind']} manifests"
            found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return documents()


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [only] = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid(manifests: dict[str, dict[str, Any]], version: str) -> None:
    assert set(manifests) == {"ConfigMap", "Secret", "Deployment", "Service",
                              "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for doc in manifests.values():
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error


def test_the_validator_rejects_a_broken_manifest(manifests: dict[str, dict[str, Any]]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(manifests["Deployment"]))
    [main] = broken["spec"]["template"]["spec"]["containers"]
    main["readinesProbe"] = main.pop("readinessProbe")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in MANIFESTS.glob("*.yaml")
                                    if p.name != "kustomization.yaml")


def test_the_pod_is_probed_bounded_and_locked_down(manifests: dict[str, dict[str, Any]]) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    main = container(manifests)
    port = main["ports"][0]
    assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert main["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # What the server writes (FHIR_DATA_DIR, /tmp) is an emptyDir; keys are read-only.
    config = manifests["ConfigMap"]["data"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {m["mountPath"]: volumes[m["name"]] for m in main["volumeMounts"]
                if not m.get("readOnly")}
    assert set(writable) == {config["FHIR_DATA_DIR"], "/tmp"}
    assert all("emptyDir" in volume for volume in writable.values())
    assert int(config["FHIR_PORT"]) == port["containerPort"]


def test_settings_come_from_the_configmap_and_secrets_from_the_secret(
        manifests: dict[str, dict[str, Any]]) -> None:
    config = manifests["ConfigMap"]["data"]
    secret = manifests["Secret"]["stringData"]
    main = container(manifests)
    assert main["envFrom"] == [{"configMapRef": {"name": manifests["ConfigMap"]["metadata"]["name"]}}]
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in main["env"]}
    assert set(from_secret) == SECRET_SETTINGS
    assert all(ref["name"] == manifests["Secret"]["metadata"]["name"] and ref["key"] in secret
               for ref in from_secret.values())
    assert not SECRET_SETTINGS & set(config)
    # Every ConfigMap entry is a setting the server knows (or a standard OTel variable)...
    known = {name.upper() for name in Settings.model_fields}
    assert set(config) - known <= OTEL_STANDARD, set(config) - known - OTEL_STANDARD
    # ...and the server accepts them all, with the Secret's connection string.
    values = {k.lower(): v for k, v in {**config, "MONGODB_URI": secret["MONGODB_URI"]}.items()
              if k.lower() in Settings.model_fields}
    settings = Settings(**values)
    assert settings.fhir_workers == 1 and settings.fhir_log_format == "json"
    # The client key file is the Secret's key, mounted read-only.
    keys = next(m for m in main["volumeMounts"] if m.get("readOnly"))
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    key_volume = next(v for v in pod["volumes"] if v["name"] == keys["name"])["secret"]
    assert key_volume["secretName"] == manifests["Secret"]["metadata"]["name"]
    [item] = key_volume["items"]
    assert item["key"] in secret
    assert str(settings.fhir_client_key_file) == f"{keys['mountPath']}/{item['path']}"


def test_mongodb_is_a_replica_set(manifests: dict[str, dict[str, Any]]) -> None:
    uri = urlsplit(manifests["Secret"]["stringData"]["MONGODB_URI"])
    assert uri.scheme == "mongodb"
    assert len(uri.netloc.split("@")[-1].split(",")) >= 3  # three members
    assert parse_qs(uri.query)["replicaSet"] == ["rs0"]


def test_scaling_disruption_and_shutdown(manifests: dict[str, dict[str, Any]]) -> None:
    deployment, hpa = manifests["Deployment"], manifests["HorizontalPodAutoscaler"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 15)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 65}
    for selector in (manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     manifests["Service"]["spec"]["selector"],
                     deployment["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert manifests["Service"]["spec"]["ports"][0]["targetPort"] == container(
        manifests)["ports"][0]["name"]
    # The pod is not killed before the drain, the requests in flight and the flush.
    config = manifests["ConfigMap"]["data"]
    needed = float(config["FHIR_SHUTDOWN_DRAIN_SECONDS"]) + float(
        config["FHIR_SHUTDOWN_GRACE_SECONDS"])
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= needed + 10
    # The drain outlasts the readiness probe's detection of it.
    probe = container(manifests)["readinessProbe"]
    assert float(config["FHIR_SHUTDOWN_DRAIN_SECONDS"]) >= (
        probe["periodSeconds"] * probe["failureThreshold"])
