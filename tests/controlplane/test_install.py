"""The manifests on a real API server: everything is admitted, the CRD is Established with its
CEL rules compiled, kubectl shows the printer columns and explains the schema, the server applies
the schema's defaults, and it refuses exactly the routes the CRD's unit test (cel-python) refuses,
with the messages docs/routes.md promises."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from hypothesis import HealthCheck, example, given, settings
from kubernetes.client.exceptions import ApiException

from stateful_route.core.constants import GROUP, PLURAL, VERSION
from stateful_route.testing.binaries import kubernetes_version
from stateful_route.testing.controlplane import ControlPlane
from tests.controlplane.conftest import CRD_NAME, ROOT
from tests.unit.test_crd_rules import NAMES, SERVICES, crd_admits

NOT_A_LABEL = (
    "metadata.name is not a DNS label (a-z, 0-9, '-', at most 63 characters), so it cannot be the "
    "service: set spec.service"
)
LABEL_PATTERN = "should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"


@pytest.fixture(scope="module")
def routes(control_plane: ControlPlane, installed: Any) -> Iterator[kubernetes.client.CustomObjectsApi]:
    with control_plane.api_client() as client:
        yield kubernetes.client.CustomObjectsApi(client)


@pytest.fixture(scope="module")
def rules_namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"rules-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


def server_refusal(
    routes: kubernetes.client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any] | None
) -> str | None:
    """Create the route with a server-side dry run: None if admitted, else the server's message
    (of an Invalid, 422, refusal: any other fails the test)."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StatefulRoute",
        "metadata": {"name": name},
    }
    if spec is not None:
        body["spec"] = spec
    try:
        routes.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All")
    except ApiException as error:
        if error.status != 422:
            raise
        return str(json.loads(error.body)["message"])
    return None


def test_the_base_and_the_example_install_and_kubectl_shows_routes(
    control_plane: ControlPlane, installed: subprocess.CompletedProcess[str]
):
    created = installed.stdout
    made = [f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}", "clusterrole.rbac",
            "serviceaccount/stateful-route-operator", "deployment.apps/stateful-route-operator"]  # fmt: skip
    for name in made:
        assert name in created
    crd = json.loads(control_plane.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"

    example = control_plane.kubectl("apply", "-k", str(ROOT / "manifests" / "example")).stdout
    assert "statefulroute.stateful-route.dev/room created" in example
    assert "statefulset.apps/game created" in example

    header, row = control_plane.kubectl("get", "sroute", "-n", "games").stdout.splitlines()
    assert header.split() == ["NAME", "SERVICE", "ROUTABLE", "BEST", "LINKS", "AGE"]
    assert row.split()[0] == "room"  # no operator runs for it: the status columns are empty
    header, row = control_plane.kubectl("get", "sroute", "-n", "games", "-o", "wide").stdout.splitlines()
    assert header.split() == ["NAME", "SERVICE", "ROUTABLE", "BEST", "LINKS", "REBIND", "AGE"]
    assert "Eager" in row.split()


def test_the_server_reports_the_version_it_was_built_as(control_plane: ControlPlane):
    reported = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]
    version = kubernetes_version()  # what controlplane/go.mod pins and build.sh stamps
    assert reported["gitVersion"] == version
    assert (reported["major"], reported["minor"]) == tuple(version.lstrip("v").split(".")[:2])


def test_kubectl_explains_the_spec(control_plane: ControlPlane, installed: Any):
    explained = control_plane.kubectl("explain", "statefulroute.spec").stdout
    assert "The StatefulSet (same namespace) whose pods users are routed to." in explained
    for field in ("statefulSetName", "service", "linkTTLSeconds", "unroutableGraceSeconds", "rebind",
                  "maxLinksPerPod", "keepLinksOnDelete", "onTermination", "rolloutWaitSeconds"):  # fmt: skip
        assert f"\n  {field}\t" in explained, field
    assert "statefulSetName\t<string> -required-" in explained


def test_the_server_applies_the_documented_defaults(
    routes: kubernetes.client.CustomObjectsApi, rules_namespace
):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StatefulRoute", "metadata": {"name": "bare"},
            "spec": {"statefulSetName": "game"}}  # fmt: skip
    made = routes.create_namespaced_custom_object(
        GROUP, VERSION, rules_namespace, PLURAL, body, dry_run="All"
    )
    assert made["spec"] == {
        "statefulSetName": "game", "linkTTLSeconds": 300, "unroutableGraceSeconds": 10, "rebind": "Lazy",
        "maxLinksPerPod": 0, "keepLinksOnDelete": False, "onTermination": "Handoff", "rolloutWaitSeconds": 10,
    }  # fmt: skip


GAME = {"statefulSetName": "game"}
# (name, spec, a fragment of the server's message); the CRD's rules and the table of docs/routes.md.
REFUSED = [
    ("room.v2", GAME, NOT_A_LABEL),
    ("a" * 64, GAME, NOT_A_LABEL),
    ("room", {**GAME, "service": ""}, "spec.service in body should be at least 1 chars long"),
    ("room", {**GAME, "service": "Room"}, f"spec.service in body {LABEL_PATTERN}"),
    ("room", {**GAME, "service": "room.v2"}, f"spec.service in body {LABEL_PATTERN}"),
    ("room", {**GAME, "service": "a" * 64}, "spec.service: Too long: may not be more than 63 bytes"),
    ("room", None, "spec: Required value"),
    ("room", {}, "spec.statefulSetName: Required value"),
    ("room", {"statefulSetName": "Game"}, f"spec.statefulSetName in body {LABEL_PATTERN}"),
    ("room", {**GAME, "linkTTLSeconds": 0}, "linkTTLSeconds in body should be greater than or equal to 1"),
    ("room", {**GAME, "linkTTLSeconds": 604801}, "should be less than or equal to 604800"),
    ("room", {**GAME, "unroutableGraceSeconds": -1}, "should be greater than or equal to 0"),
    ("room", {**GAME, "rebind": "Sometimes"}, '"Sometimes": supported values: "Lazy", "Eager"'),
    ("room", {**GAME, "onTermination": "Drain"}, 'supported values: "Handoff", "Evict"'),
    ("room", {**GAME, "maxLinksPerPod": -1}, "maxLinksPerPod in body should be greater than or equal to 0"),
    ("room", {**GAME, "rolloutWaitSeconds": 3601}, "in body should be less than or equal to 3600"),
    ("room", {**GAME, "keepLinksOnDelete": "yes"}, "spec.keepLinksOnDelete in body must be of type boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "spec", "message"), REFUSED)
def test_the_server_refuses_an_invalid_route_saying_why(
    routes: kubernetes.client.CustomObjectsApi, rules_namespace: str, name: str, spec: Any, message: str
):
    refusal = server_refusal(routes, rules_namespace, name, spec)
    assert refusal is not None, f"admitted: {name} {spec}"
    assert message in refusal, refusal


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, service=SERVICES)
# The examples of tests/unit/test_crd_rules.py, each through the real server.
@example(name="room.v2", service=None)
@example(name="room.v2", service="room")
@example(name="a" * 64, service=None)
@example(name="a" * 63, service=None)
@example(name="room", service=None)
@example(name="room", service="")
@example(name="room", service="Room")
def test_the_real_server_and_cel_python_agree_on_every_route(
    routes: kubernetes.client.CustomObjectsApi, rules_namespace: str, name: str, service: str | None
):
    spec: dict[str, Any] = {"statefulSetName": "game"}
    if service is not None:
        spec["service"] = service
    refusal = server_refusal(routes, rules_namespace, name, spec)
    assert (refusal is None) == crd_admits(name, spec), (name, spec, refusal)
