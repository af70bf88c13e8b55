"""kopf's record of the last handled configuration (an annotation on our StatefulRoutes), built
without deep-copying what it throws away.

kopf builds this *essence* of every object on every event it processes, pods included: it
deep-copies the whole body, then drops ``metadata`` (all but labels and annotations) and
``status``. A pod's managedFields and status are most of its body, so that copy was the largest
single cost of a pod event at 1,000 pods (BENCHMARKS.md, figure 12). Here the body is cut down to
what the essence can hold before kopf builds it: the same essence, a fraction of the copying.

kopf reads the essence only for kinds with change-detecting handlers (create, update, delete,
resume) or timers; it builds one for every event anyway, then deep-copies it again to strip its
own annotations. Told which kinds those are, the storage gives the others (pods, StatefulSets:
watched only) an empty essence, and neither copy is made.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, cast

import kopf

__all__ = ["LeanDiffBaseStorage"]

# What kopf's build reads of metadata: labels and annotations go into the essence, and
# ownerReferences name its annotation's key for a few kinds.
_METADATA = ("labels", "annotations", "ownerReferences")


def _outside(field: Any) -> bool:
    """Whether an extra field the handlers track lies in what the lean body leaves out."""
    path = field.split(".") if isinstance(field, str) else [str(part) for part in field]
    if not path or path[0] == "status":
        return True
    return path[0] == "metadata" and (len(path) < 2 or path[1] not in _METADATA[:2])


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """``kopf.AnnotationsDiffBaseStorage`` whose ``build`` copies only what the essence keeps,
    and nothing of objects whose kind is not in ``kinds`` (if given): their essence is empty."""

    def __init__(self, *, prefix: str, key: str, kinds: Collection[str] | None = None) -> None:
        super().__init__(prefix=prefix, key=key)
        self._kinds = None if kinds is None else frozenset(kinds)

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> Any:
        kind = body.get("kind")
        if self._kinds is not None and kind is not None and kind not in self._kinds:
            return kopf.BodyEssence()
        fields = list(extra_fields or ())
        if any(_outside(field) for field in fields):  # not ours today: kopf's own way, whole
            return super().build(body=body, extra_fields=fields)
        meta = body.get("metadata") or {}
        lean: dict[str, Any] = {
            key: value for key, value in body.items() if key not in ("metadata", "status")
        }
        lean["metadata"] = {key: meta[key] for key in _METADATA if key in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, lean)), extra_fields=fields)
