"""The Kubernetes manifest: valid for real Kubernetes versions, and what an operator needs.

Validation is ``kubernetes-validate`` (pinned in the dev extra): the JSON schemas of every
Kubernetes release it supports ship inside the package, so it runs offline; ``strict``
refuses properties a schema does not know (a misspelled ``readinessProb`` is otherwise
well-formed, and the pod would run without its probe). We check
the oldest and newest versions it ships that the manifest targets. The other tests pin
the properties the manifest's comments promise: restricted Pod Security, probes, leave on
preStop, seeds derived from the StatefulSet, secrets as files.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "k8s" / "rumordb.yaml"
MANIFESTS = sorted((REPO / "deploy" / "k8s").glob("*.y*ml"))  # every manifest we ship
VERSIONS = ("1.30", "1.37")  # 1.30: the oldest release still common in managed clusters
FILE_SECRETS = {
    "RUMOR_CLUSTER_SECRET_FILE": "cluster-secret",
    "RUMOR_ADMIN_KEY_FILE": "admin-key",
    "RUMOR_READER_KEY_FILE": "reader-key",
}


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"] == kind]


def statefulset() -> dict[str, Any]:
    (found,) = by_kind("StatefulSet")
    return found


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = statefulset()["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (found,) = pod_spec()["containers"]
    return dict(found)


def args() -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in container()["args"])


def env() -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container()["env"]}


def validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


# --- the schema validator ------------------------------------------------------------
def test_the_validator_ships_the_schemas_of_the_versions_we_check() -> None:
    shipped = {kv_utils.major_minor(v) for v in kv_utils.all_versions()}
    assert set(VERSIONS) <= shipped


def test_the_manifest_holds_the_services_the_statefulset_and_the_budget() -> None:
    assert MANIFEST in MANIFESTS
    kinds = sorted(doc["kind"] for doc in documents())
    assert kinds == ["PodDisruptionBudget", "Service", "Service", "StatefulSet"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_every_document_of_every_manifest_is_valid_for_kubernetes(
    manifest: Path, version: str
) -> None:
    docs = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    assert docs, f"{manifest.name} holds no document"
    for doc in docs:
        validate(doc, version)


def _misspelled_probe(doc: dict[str, Any]) -> None:
    probes = doc["spec"]["template"]["spec"]["containers"][0]
    probes["readinessProb"] = probes.pop("readinessProbe")


def _replicas_as_text(doc: dict[str, Any]) -> None:
    doc["spec"]["replicas"] = "three"


def _no_containers(doc: dict[str, Any]) -> None:
    del doc["spec"]["template"]["spec"]["containers"]


def _bad_port(doc: dict[str, Any]) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"


@pytest.mark.parametrize(
    "breakage", [_misspelled_probe, _replicas_as_text, _no_containers, _bad_port]
)
def test_the_validator_rejects_a_broken_statefulset(breakage: Any) -> None:
    broken = copy.deepcopy(statefulset())
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, VERSIONS[-1])


def test_the_validator_rejects_a_removed_api_version() -> None:
    (budget,) = by_kind("PodDisruptionBudget")
    old = {**copy.deepcopy(budget), "apiVersion": "policy/v1beta1"}  # removed in 1.25
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate(old, VERSIONS[0])


# --- what the operator relies on -------------------------------------------------------
def services() -> tuple[dict[str, Any], dict[str, Any]]:
    headless = [s for s in by_kind("Service") if s["spec"].get("clusterIP") == "None"]
    client = [s for s in by_kind("Service") if s["spec"].get("clusterIP") != "None"]
    assert len(headless) == 1 and len(client) == 1, "one headless and one client Service"
    return headless[0], client[0]


def test_a_client_service_besides_the_headless_one_selects_the_pods() -> None:
    headless, client = services()
    labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert statefulset()["spec"]["serviceName"] == headless["metadata"]["name"]
    # Peers must find not-ready pods (a pod is ready only once it has joined); clients not.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert not client["spec"].get("publishNotReadyAddresses", False)
    for service in (headless, client):
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_a_disruption_budget_and_anti_affinity_spread_the_pods() -> None:
    (budget,) = by_kind("PodDisruptionBudget")
    labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    anti = pod_spec()["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()


def test_the_pod_meets_the_restricted_pod_security_level() -> None:
    pod, box = pod_spec()["securityContext"], container()["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert box["allowPrivilegeEscalation"] is False
    assert box["capabilities"]["drop"] == ["ALL"] and "add" not in box["capabilities"]
    assert box["readOnlyRootFilesystem"] is True
    assert not box.get("privileged", False)
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    assert mounts["/data"] == "data" and mounts["/tmp"] == "tmp"  # the only writable paths
    templates = [t["metadata"]["name"] for t in statefulset()["spec"]["volumeClaimTemplates"]]
    assert templates == ["data"]
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    assert not any("hostPath" in v for v in volumes.values())


def test_readiness_is_ready_liveness_is_health_and_prestop_leaves() -> None:
    box = container()
    assert box["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert box["livenessProbe"]["httpGet"]["path"] == "/health"
    assert box["startupProbe"]["httpGet"]["path"] == "/health"
    assert box["lifecycle"]["preStop"]["exec"]["command"] == ["rumor", "node", "leave"]
    assert pod_spec()["terminationGracePeriodSeconds"] >= 60  # leave + handoff take time


def test_seeds_name_the_headless_service_not_a_fixed_list_of_pods() -> None:
    headless, _ = services()
    name = headless["metadata"]["name"]
    given = args()
    assert given["seeds"] == f"http://{name}.$(POD_NAMESPACE).svc:8001"
    assert given["advertise-url"] == f"http://$(POD_NAME).{name}.$(POD_NAMESPACE).svc:8001"
    assert given["node-id"] == "$(POD_NAME)" and given["broadcast"] == "off"


def test_secrets_are_mounted_files_never_environment_values() -> None:
    variables = env()
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert mounts["secrets"]["readOnly"] is True
    assert volumes["secrets"]["secret"]["secretName"] == "rumordb"
    directory = mounts["secrets"]["mountPath"]
    for variable, key in FILE_SECRETS.items():
        assert variables[variable] == f"{directory}/{key}"
    for variable in ("RUMOR_CLUSTER_SECRET", "RUMOR_ADMIN_KEY", "RUMOR_READER_KEY"):
        assert variable not in variables
    assert not any("secretKeyRef" in str(item) for item in container()["env"])


def test_requests_and_limits_are_set() -> None:
    resources = container()["resources"]
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[part].keys(), part
