"""The CRD admits exactly the routes the operator accepts: the same generated names and specs go
through the CRD's schema and CEL rules (evaluated by cel-python) and through ``RouteSpec.parse``."""

from __future__ import annotations

from typing import Any

import celpy
import jsonschema
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stateful_route.controller.spec import RouteSpec
from stateful_route.core.errors import InvalidInput
from tests.unit.test_manifests import crd

SCHEMA = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
RULES = [celpy.Environment().program(celpy.Environment().compile(r["rule"]))
         for r in SCHEMA.get("x-kubernetes-validations", [])]  # fmt: skip

# Kubernetes object names are DNS subdomains: lower-case alphanumerics, '-' and '.', ≤ 253.
LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,70}[a-z0-9])?", fullmatch=True)
NAMES = st.lists(LABEL, min_size=1, max_size=3).map(".".join).filter(lambda n: len(n) <= 253)
SERVICES = st.one_of(st.none(), LABEL, NAMES, st.just(""), st.just("Room"))


def crd_admits(name: str, spec: dict[str, Any]) -> bool:
    body = {"apiVersion": "stateful-route.dev/v1alpha1", "kind": "StatefulRoute",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip
    try:
        jsonschema.validate(body, SCHEMA)
    except jsonschema.ValidationError:
        return False
    return all(bool(rule.evaluate({"self": celpy.json_to_cel(body)})) for rule in RULES)


def operator_accepts(name: str, spec: dict[str, Any]) -> bool:
    try:
        RouteSpec.parse(name, spec)
    except InvalidInput:
        return False
    return True


@pytest.mark.slow  # seconds of exploration: in make test, not in the fast loop
@given(name=NAMES, service=SERVICES)
@example(name="room.v2", service=None)  # the reviewed case: admitted, then failed forever
@example(name="room.v2", service="room")
@example(name="a" * 64, service=None)
@example(name="a" * 63, service=None)
@example(name="room", service=None)
def test_the_crd_and_the_operator_agree_on_every_route(name: str, service: str | None):
    spec: dict[str, Any] = {"statefulSetName": "game"}
    if service is not None:
        spec["service"] = service
    assert crd_admits(name, spec) == operator_accepts(name, spec), (name, spec)


def test_a_dotted_name_needs_a_service():
    assert not crd_admits("room.v2", {"statefulSetName": "game"})
    assert crd_admits("room.v2", {"statefulSetName": "game", "service": "room-v2"})
