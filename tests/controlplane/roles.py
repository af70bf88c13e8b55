"""The operator's ClusterRole as `kubectl kustomize manifests/base` renders it, taken apart into
single permissions (one verb on one resource) and put together again without one of them, and
ServiceAccounts bound to such a role for the operator to log in as."""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from stateful_route.testing.controlplane import ControlPlane

ROOT = Path(__file__).parents[2]
OPERATOR_ROLE = "stateful-route-operator"


@dataclass(frozen=True, order=True)
class Permission:
    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}" + (f".{self.group}" if self.group else "")


def rendered(control_plane: ControlPlane, folder: str = "base") -> list[dict[str, Any]]:
    """Every object `kubectl apply -k manifests/<folder>` would send."""
    out = control_plane.kubectl("kustomize", str(ROOT / "manifests" / folder)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def operator_role(control_plane: ControlPlane) -> dict[str, Any]:
    """The operator's ClusterRole from manifests/base."""
    roles = [d for d in rendered(control_plane) if d["kind"] == "ClusterRole"]
    [role] = [r for r in roles if r["metadata"]["name"] == OPERATOR_ROLE]
    return role


def permissions(role: dict[str, Any]) -> set[Permission]:
    """The role as single permissions. A role using wildcards or resourceNames is not least
    privilege in the first place: refused here rather than half understood."""
    found = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule, rule
        assert "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    found.add(Permission(group, resource, verb))
    return found


def without(role: dict[str, Any], taken: Permission) -> dict[str, Any]:
    """The role minus one permission (a rule left with nothing to grant is dropped)."""
    assert taken in permissions(role), f"{taken} is not in the role"
    rules = []
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs = [v for v in rule["verbs"] if Permission(group, resource, v) != taken]
                if verbs:  # one rule per (group, resource): the same grants, taken apart
                    rules.append({"apiGroups": [group], "resources": [resource], "verbs": verbs})
    reduced = copy.deepcopy(role)
    reduced["rules"] = rules
    assert permissions(reduced) == permissions(role) - {taken}
    return reduced


@dataclass(frozen=True)
class Account:
    """A ServiceAccount bound to a ClusterRole of its own, and a kubeconfig logged in as it."""

    namespace: str
    name: str
    kubeconfig: Path


def grant(control_plane: ControlPlane, namespace: str, role: dict[str, Any]) -> Account:
    """A new ServiceAccount in ``namespace`` holding ``role``'s rules cluster-wide (as the
    manifests bind the operator's role), and a TokenRequest token for it."""
    name = f"operator-{secrets.token_hex(3)}"
    with control_plane.api_client() as client:
        core = kubernetes.client.CoreV1Api(client)
        rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": role["rules"]})
        rbac.create_cluster_role_binding({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        })  # fmt: skip
    return Account(namespace, name, control_plane.service_account_kubeconfig(namespace, name))


def revoke(control_plane: ControlPlane, account: Account) -> None:
    """Delete the account's cluster-wide role and binding (the account goes with its namespace)."""
    with control_plane.api_client() as client:
        rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        rbac.delete_cluster_role_binding(account.name)
        rbac.delete_cluster_role(account.name)
