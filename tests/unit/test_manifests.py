"""Manifests and the CRD validate against the real Kubernetes schemas; the Deployment is locked down."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stateful_route.core.constants import GROUP, KIND, PLURAL, SHORT_NAME, VERSION
from stateful_route.core.version import VERSION as RELEASE
from tests.tools import KUBECTL

ROOT = Path(__file__).parents[2]
K8S_VERSION = "1.30.0"
# The Prometheus Operator's kinds (manifests/monitoring): promtool checks the rules
# (tests/unit/test_alerts.py), tests/unit/test_monitoring_manifests.py the rest.
MONITORING = "monitoring.coreos.com/v1"
# Kustomize patches are fragments, checked by applying them in a real cluster, not here.
YAMLS = sorted(
    p
    for p in [*ROOT.glob("manifests/**/*.yaml"), *ROOT.glob("crds/*.yaml")]
    if not p.name.endswith("-patch.yaml")
)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> list[dict[str, Any]]:
    return [doc for path in YAMLS for doc in documents(path) if "Kustomization" not in doc.get("kind", "")]


KUSTOMIZATIONS = sorted(
    p.parent for p in [*ROOT.glob("manifests/**/kustomization.yaml"), *ROOT.glob("crds/kustomization.yaml")]
)
OPERATOR_SA = {
    "kind": "ServiceAccount",
    "name": "stateful-route-operator",
    "namespace": "stateful-route-system",
}


@functools.cache
def render(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k DIR` would send: the real kustomize, so a layout it refuses fails here."""
    out = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD any kustomization installs."""
    return {
        (f"{doc['spec']['group']}/{version['name']}", doc["spec"]["names"]["kind"]): version["schema"][
            "openAPIV3Schema"
        ]
        for directory in KUSTOMIZATIONS
        for doc in render(directory)
        if doc["kind"] == "CustomResourceDefinition"
        for version in doc["spec"]["versions"]
    }


def test_the_manifest_layout_has_base_ha_and_example_side_by_side():
    names = {str(d.relative_to(ROOT)) for d in KUSTOMIZATIONS}
    assert {"crds", "manifests/base", "manifests/ha", "manifests/example", "manifests/monitoring"} <= names
    assert not (ROOT / "manifests" / "kustomization.yaml").exists()


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_kustomization_renders_and_every_rendered_object_is_valid(directory):
    docs = render(directory)
    assert docs
    schemas = crd_schemas()
    for doc in docs:
        custom = schemas.get((doc["apiVersion"], doc["kind"]))
        if custom is not None:
            jsonschema.validate(doc, custom)
        elif doc["apiVersion"] != MONITORING:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def operator_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return deployment


def test_the_base_runs_one_operator_without_peering():
    deployment = operator_deployment(render(ROOT / "manifests" / "base"))
    assert deployment["spec"].get("replicas", 1) == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--peering" not in container["args"]


def test_the_ha_render_runs_two_peering_replicas_allowed_to_peer():
    docs = render(ROOT / "manifests" / "ha")
    deployment = operator_deployment(docs)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "operator"
    assert args[args.index("--peering") + 1] == "stateful-route"
    # The patch replaced the args list: what the base set must still be there.
    assert "--all-namespaces" in args
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == OPERATOR_SA["name"]
    assert deployment["metadata"]["namespace"] == OPERATOR_SA["namespace"]
    (peering,) = [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    assert peering["metadata"]["name"] == "stateful-route"
    assert any(
        d["kind"] == "CustomResourceDefinition" and d["metadata"]["name"] == "clusterkopfpeerings.kopf.dev"
        for d in docs
    )
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    bound = {
        d["roleRef"]["name"]
        for d in docs
        if d["kind"] == "ClusterRoleBinding" and OPERATOR_SA in d["subjects"]
    }
    peering_verbs = {
        verb
        for name in bound
        for rule in roles[name]["rules"]
        if "kopf.dev" in rule["apiGroups"] and "clusterkopfpeerings" in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {"get", "list", "watch", "patch"} <= peering_verbs


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_is_valid_for_kubernetes(path):
    for doc in documents(path):
        if doc.get("kind") == "Kustomization":
            for resource in doc["resources"]:
                assert (path.parent / resource).exists(), resource
            for patch in doc.get("patches", []):
                assert (path.parent / patch["path"]).exists(), patch
            continue
        if doc.get("apiVersion") in (f"{GROUP}/{VERSION}", "kopf.dev/v1", MONITORING):
            continue  # custom kinds: ours is checked against its CRD below, kopf's is trivial
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def crd() -> dict[str, Any]:
    return documents(ROOT / "crds" / "statefulroute.yaml")[0]


def test_crd_names_match_the_code():
    spec = crd()["spec"]
    assert (spec["group"], spec["names"]["plural"], spec["names"]["kind"]) == (GROUP, PLURAL, KIND)
    assert spec["names"]["shortNames"] == [SHORT_NAME]
    assert spec["scope"] == "Namespaced"
    (version,) = spec["versions"]
    assert version["name"] == VERSION
    assert version["subresources"] == {"status": {}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Service", "Routable", "Best", "Links", "Age"} <= columns


def test_example_route_matches_the_crd_schema():
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    example = documents(ROOT / "manifests" / "example" / "statefulroute.yaml")[0]
    jsonschema.validate(example, schema)
    for bad in (
        {"statefulSetName": "Game_1"},
        {"statefulSetName": "game", "linkTTLSeconds": 0},
        {"statefulSetName": "game", "linkTTLSeconds": "300"},
        {"statefulSetName": "game", "rebind": "Sometimes"},
        {"statefulSetName": "game", "maxLinksPerPod": -1},
        {"statefulSetName": "game", "unroutableGraceSeconds": 1.5},
        {"statefulSetName": "game", "rolloutWaitSeconds": 3601},
        {"service": "room"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**example, "spec": bad}, schema)


def test_rbac_has_no_wildcards_and_the_operator_runs_locked_down():
    for doc in all_documents():
        for rule in doc.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), rule
    (deployment,) = [d for d in all_documents() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    assert container["args"][0] == "operator"


def test_dockerfile_is_slim_non_root_and_runs_the_operator():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines() if line.strip()]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert bases
    assert all(base.startswith("python:3.11-slim") for base in bases)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["stateful-route"]' in lines
    assert any(line.startswith("CMD") and '"operator"' in line for line in lines)


def test_the_docs_prestop_statefulset_is_valid_and_calls_handoff():
    readme = (ROOT / "docs" / "pods.md").read_text()
    snippets = [yaml.safe_load(block.split("```")[0]) for block in readme.split("```yaml\n")[1:]]
    statefulset = next(doc for doc in snippets if doc.get("kind") == "StatefulSet")
    kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)
    pod = statefulset["spec"]["template"]["spec"]
    command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert "stateful-route handoff games room" in command[-1]
    timeout = float(command[-1].split("--timeout")[1].split()[0])
    assert timeout < pod["terminationGracePeriodSeconds"]


def test_the_namespaced_ha_render_lets_the_operator_patch_its_kopfpeering():
    # With --namespace, kopf meets in a KopfPeering in each watched namespace (not the cluster one).
    docs = render(ROOT / "manifests" / "ha-namespaced")
    (peering,) = [d for d in docs if d["kind"] == "KopfPeering"]
    namespace = peering["metadata"]["namespace"]
    assert peering["metadata"]["name"] == "stateful-route"
    (crd,) = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert (crd["metadata"]["name"], crd["spec"]["scope"]) == ("kopfpeerings.kopf.dev", "Namespaced")
    here = [d for d in docs if d["metadata"].get("namespace") == namespace]
    roles = {d["metadata"]["name"]: d for d in here if d["kind"] == "Role"}
    bound = [
        roles[d["roleRef"]["name"]]
        for d in here
        if d["kind"] == "RoleBinding" and OPERATOR_SA in d["subjects"]
    ]
    verbs = {
        verb
        for role in bound
        for rule in role["rules"]
        if "kopf.dev" in rule["apiGroups"] and "kopfpeerings" in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {"get", "list", "watch", "patch"} <= verbs


def test_the_deployment_names_this_releases_image():
    """The operator image's tag follows the package's version, so a release never ships manifests
    that run the previous release's operator."""
    deployment = (ROOT / "manifests" / "base" / "deployment.yaml").read_text()
    assert f"ghcr.io/stateful-route/stateful-route:{RELEASE}\n" in deployment
