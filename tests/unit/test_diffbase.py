"""The lean build of kopf's last-handled configuration is kopf's own, for any body and any fields
the handlers track: only the copying differs."""

from __future__ import annotations

import kopf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stateful_route.controller.diffbase import LeanDiffBaseStorage
from stateful_route.core.constants import GROUP

KEY = "last-handled-configuration"
names = st.sampled_from([
    "app", "zone", "x", f"{GROUP}/{KEY}", f"{GROUP}/routing-state",
    "kubectl.kubernetes.io/last-applied-configuration", "kopf.zalando.org/touch",
])  # fmt: skip
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3)
)
metadata = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=5), "uid": st.text(max_size=5)},
    optional={
        "labels": st.dictionaries(names, st.text(max_size=5), max_size=3),
        "annotations": st.dictionaries(names, st.text(max_size=20), max_size=4),
        "ownerReferences": st.lists(
            st.fixed_dictionaries(
                {"kind": st.sampled_from(["StatefulSet", "Deployment"]), "name": st.just("a")}
            ),
            max_size=2,
        ),
        "managedFields": st.lists(st.dictionaries(names, values, max_size=3), max_size=3),
        "deletionTimestamp": st.just("2026-12-07T00:00:00Z"),
    },
)
bodies = st.fixed_dictionaries(
    {"metadata": metadata},
    optional={
        "apiVersion": st.just("v1"),
        "kind": st.sampled_from(["Pod", "StatefulRoute", "ReplicaSet"]),
        "spec": st.dictionaries(names, values, max_size=4),
        "status": st.dictionaries(names, values, max_size=4),
        "data": values,
    },
)
fields = st.lists(
    st.sampled_from(["spec", "spec.app", "status", "status.app", "metadata.name", "metadata.labels.app",
                     "metadata", ("spec", "zone"), ("status",)]),
    max_size=2,
)  # fmt: skip


@pytest.mark.slow  # seconds of exploration: in make test, not in the fast loop
@settings(max_examples=300, deadline=None)
@given(bodies, fields)
def test_the_lean_essence_is_kopfs(raw, extra):
    theirs = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key=KEY)
    ours = LeanDiffBaseStorage(prefix=GROUP, key=KEY)
    assert ours.build(body=kopf.Body(raw), extra_fields=extra) == theirs.build(
        body=kopf.Body(raw), extra_fields=extra
    )


class Uncopyable:
    def __deepcopy__(self, memo: object) -> None:
        raise AssertionError("copied")


def test_a_pods_managed_fields_and_status_are_not_copied():
    raw = {
        "metadata": {"name": "game-0", "labels": {"app": "game"}, "managedFields": [Uncopyable()]},
        "spec": {"containers": []},
        "status": {"conditions": [Uncopyable()]},
    }
    built = LeanDiffBaseStorage(prefix=GROUP, key=KEY).build(body=kopf.Body(raw), extra_fields=[])
    assert built == {"metadata": {"labels": {"app": "game"}}, "spec": {"containers": []}}


@settings(max_examples=100, deadline=None)
@given(bodies, fields)
def test_only_the_named_kinds_have_an_essence(raw, extra):
    """The operator's routes keep kopf's essence; a pod (watched only) has an empty one, built
    without copying anything of it; a body that does not say its kind is built kopf's way."""
    theirs = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key=KEY)
    ours = LeanDiffBaseStorage(prefix=GROUP, key=KEY, kinds=("StatefulRoute",))
    built = ours.build(body=kopf.Body(raw), extra_fields=extra)
    if raw.get("kind", "StatefulRoute") == "StatefulRoute":
        assert built == theirs.build(body=kopf.Body(raw), extra_fields=extra)
    else:
        assert built == {}


def test_a_watched_kinds_body_is_not_copied_at_all():
    raw = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "game-0", "labels": {"app": "game"}, "annotations": {"a": Uncopyable()}},
        "spec": {"containers": [Uncopyable()]},
    }
    storage = LeanDiffBaseStorage(prefix=GROUP, key=KEY, kinds=("StatefulRoute",))
    assert storage.build(body=kopf.Body(raw), extra_fields=["spec"]) == {}
    # kopf strips its own annotations from the essence by a deep copy: an empty one copies nothing
    assert (
        kopf.AnnotationsProgressStorage(prefix=GROUP).clear(essence=storage.build(body=kopf.Body(raw))) == {}
    )
