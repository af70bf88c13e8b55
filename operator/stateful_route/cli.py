"""The ``stateful-route`` command: the operator, the demo, and admin commands."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from stateful_route import local_redis

__all__ = ["app", "main"]

app = typer.Typer(
    help="Sticky, load-aware routing of users to StatefulSet pods.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

RedisUrl = Annotated[
    str,
    typer.Option("--redis-url", envvar="REDIS_URL", help="Redis to use (redis://, rediss:// for TLS)."),
]
Prefix = Annotated[str, typer.Option(help="Key prefix shared by the operator and its clients.")]


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Watch this namespace (repeatable).")
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")
    ] = False,
    redis_url: RedisUrl = local_redis.DEFAULT_URL,
    prefix: Prefix = "sr",
    kubeconfig: Annotated[
        str | None, typer.Option(envvar="KUBECONFIG", help="Kubeconfig outside a cluster.")
    ] = None,
    liveness: Annotated[
        str, typer.Option(help="Liveness endpoint served by kopf.")
    ] = "http://0.0.0.0:8080/healthz",
    peering: Annotated[
        str | None, typer.Option(help="KopfPeering name for HA (one active instance); standalone if unset.")
    ] = None,
) -> None:
    """Run the operator: keep route tables, evict and rebind, mirror status into StatefulRoutes.

    Example: stateful-route operator --namespace games --redis-url redis://redis:6379/0
    """
    from stateful_route.handlers import OperatorConfig
    from stateful_route.runner import run

    if namespace and all_namespaces:
        raise typer.BadParameter("use --namespace or --all-namespaces, not both")
    if not namespace and not all_namespaces:
        raise typer.BadParameter("name --namespace NS (repeatable) or --all-namespaces")
    config = OperatorConfig(redis_url=redis_url, prefix=prefix, kubeconfig=kubeconfig)
    asyncio.run(run(config, namespaces=namespace or (), peering=peering, liveness=liveness or None))


@app.command()
def demo(
    redis_url: RedisUrl = local_redis.DEFAULT_URL,
    users: Annotated[int, typer.Option(min=1, help="How many users to place.")] = 12,
    pods: Annotated[int, typer.Option(min=1, help="How many pods the route has.")] = 4,
) -> None:
    """Place a few users on a route of ready pods and show where they went.

    Example: stateful-route demo --users 20 --pods 5
    """
    from stateful_route.example import run_example

    try:
        with local_redis.redis_url(redis_url) as url:
            asyncio.run(run_example(url, users=users, pods=pods))
    except local_redis.NoRedis as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def main() -> None:
    """Console-script entry point."""
    app()
