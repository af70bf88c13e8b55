"""Names shared by the operator, the CRD, the manifests and the CLI."""

from __future__ import annotations

__all__ = [
    "DEFAULT_LINK_TTL",
    "GROUP",
    "KIND",
    "LAYOUT",
    "PLURAL",
    "POD_INDEX_LABEL",
    "REVISION_LABEL",
    "ROUTING_ANNOTATION",
    "SHORT_NAME",
    "STS_POD_NAME_LABEL",
    "VERSION",
]

GROUP = "stateful-route.dev"
VERSION = "v1alpha1"
PLURAL = "statefulroutes"
KIND = "StatefulRoute"
SHORT_NAME = "sroute"

# Seconds a link lives until a pod confirms it: ClientDriver's and the CRD's default.
DEFAULT_LINK_TTL = 300

# `kubectl annotate pod game-3 stateful-route.dev/routing-state=DenyNewCall` drains a pod.
ROUTING_ANNOTATION = f"{GROUP}/routing-state"
# Set on every StatefulSet pod by the controller; the index label exists since Kubernetes 1.28.
STS_POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
# The StatefulSet revision a pod runs (compared with the StatefulSet's status.updateRevision).
REVISION_LABEL = "controller-revision-hash"

# The Redis layout this release reads and writes (lua/include/layout.lua holds the same number;
# docs/redis.md, "Layout versions", lists every layout and what each script does with an older one).
LAYOUT = 2
