"""stateful-route: sticky, load-aware routing of users to the pods of StatefulSets."""

from stateful_route.client import ClientDriver
from stateful_route.errors import (
    InvalidInput,
    NoAvailablePod,
    StatefulRouteError,
    StoreError,
    StoreUnavailable,
)
from stateful_route.models import PodState, RouteSnapshot, RoutingState
from stateful_route.server import ServerDriver
from stateful_route.table import RouteTable

__all__ = [
    "ClientDriver",
    "InvalidInput",
    "NoAvailablePod",
    "PodState",
    "RouteSnapshot",
    "RouteTable",
    "RoutingState",
    "ServerDriver",
    "StatefulRouteError",
    "StoreError",
    "StoreUnavailable",
]
