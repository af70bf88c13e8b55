"""stateful-route: sticky, load-aware routing of users to the pods of StatefulSets."""

from stateful_route.core.errors import (
    InvalidInput,
    LayoutTooNew,
    NoAvailablePod,
    PodPending,
    StatefulRouteError,
    StoreError,
    StoreUnavailable,
)
from stateful_route.core.state import PodState, RouteSnapshot, RoutingState
from stateful_route.core.version import VERSION
from stateful_route.gateway.client import ClientDriver
from stateful_route.pod.server import HandOffResult, ServerDriver
from stateful_route.store.table import RouteTable

__version__ = VERSION

__all__ = [
    "ClientDriver",
    "HandOffResult",
    "InvalidInput",
    "LayoutTooNew",
    "NoAvailablePod",
    "PodPending",
    "PodState",
    "RouteSnapshot",
    "RouteTable",
    "RoutingState",
    "ServerDriver",
    "StatefulRouteError",
    "StoreError",
    "StoreUnavailable",
    "__version__",
]
