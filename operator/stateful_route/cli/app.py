"""The ``stateful-route`` command: the operator, the demo, and admin commands.

Exit codes, the same for every command: 0 done; 1 not found (no such route, pod or link);
2 bad input or usage; 3 Redis unavailable or failing; 4 no available pod; 5 timed out (handoff);
6 the route's Redis layout is newer than this release (upgrade it); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from stateful_route.cli.output import err, literal, out
from stateful_route.core import logs
from stateful_route.core.errors import (
    InvalidInput,
    LayoutTooNew,
    NoAvailablePod,
    StatefulRouteError,
    StoreError,
)
from stateful_route.core.logs import LogFormat
from stateful_route.core.state import RoutingState
from stateful_route.core.urls import redact_text, redact_url
from stateful_route.core.version import VERSION
from stateful_route.store import faults
from stateful_route.store.connection import check_url
from stateful_route.testing import local_redis

__all__ = ["app", "main"]

EXIT_NOT_FOUND, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_NO_POD, EXIT_TIMED_OUT, EXIT_INTERRUPTED = (
    1,
    2,
    3,
    4,
    5,
    130,
)
EXIT_TOO_NEW = 6  # a newer release wrote the route: retrying cannot help, upgrading does
# What one Redis call of ``handoff`` may wait, whatever its overall --timeout.
HANDOFF_REDIS_WAIT = 2.0
# What Redis (or the Sentinels naming its primary) may raise once found: typed, or redis-py's own.
_REDIS_FAULTS: tuple[type[Exception], ...] = (StoreError, *faults.FAULTS)


class _Commands(TyperGroup):
    """Usage errors (a missing argument, an unknown option, a value of the wrong type) as one line
    on stderr, and as a JSON object on stdout when ``--json`` was given, with exit code 2."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with _usage_errors(args):
            ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta["stateful_route.argv"] = list(args)
        return ctx

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors(ctx.meta.get("stateful_route.argv", [])):
            return super().invoke(ctx)


@contextlib.contextmanager
def _usage_errors(argv: list[str]) -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:
        # Typer's own click raises these; a usage error (exit code 2) carries its context.
        if getattr(exc, "exit_code", None) != EXIT_INVALID or not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help (printed) is the answer: no error line
            raise
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        # Click echoes the arguments it refused, which may be a Redis URL given without --redis-url.
        message = redact_text(exc.format_message()) + where
        raise _fail(EXIT_INVALID, message, "--json" in argv, json_logs=_json_logs(argv)) from exc


def _json_logs(argv: list[str]) -> bool:
    """The operator was asked for JSON logs: the error that stops it at start is a JSON log line
    too, so that a log pipeline reads it. Read from the raw arguments, since it may be their
    parsing that failed."""
    if argv[:1] != ["operator"]:
        return False
    return "--log-format=json" in argv or any(
        arg == "--log-format" and following == "json" for arg, following in itertools.pairwise(argv)
    )


app = typer.Typer(
    cls=_Commands,
    help="Sticky, load-aware routing of users to StatefulSet pods.\n\n"
    "Exit codes: 0 done, 1 not found, 2 bad input, 3 Redis unavailable, 4 no available pod, 5 timed out, "
    "6 route layout newer than this release.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
T = TypeVar("T")

_REDIS_URL_OPTION = typer.Option(
    "--redis-url",
    envvar="REDIS_URL",
    help="Redis to use (redis://, rediss:// for TLS, ?cluster=true, redis+sentinel://h:p,h:p/<master-name>).",
)
RedisUrl = Annotated[str, _REDIS_URL_OPTION]
# Where "not named" differs from the default URL (the demo may start a private server, never for a named one).
RedisUrlIfNamed = Annotated[str | None, _REDIS_URL_OPTION]
Prefix = Annotated[str, typer.Option(help="Key prefix shared by the operator and its clients.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Timeout = Annotated[float, typer.Option(min=0.01, help="Seconds to wait for Redis.")]
Namespace = Annotated[str, typer.Argument(help="Kubernetes namespace of the route.")]
Service = Annotated[str, typer.Argument(help="The route's service (spec.service, default its name).")]
Uid = Annotated[str, typer.Argument(help="The user's id.")]
Pod = Annotated[int, typer.Argument(help="The pod's ordinal (game-3 is 3).")]


@dataclass(frozen=True)
class Target:
    """The options every admin command shares: which Redis, which prefix, JSON or a table, how long."""

    redis_url: str
    prefix: str
    as_json: bool
    timeout: float


def admin_command(
    *, timeout: float = 2.0, timeout_help: str | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register an admin command taking its own arguments and a ``target: Target``, which the
    user gives as --redis-url, --prefix, --json and --timeout (default ``timeout`` seconds; what
    it bounds, if not each Redis call, says ``timeout_help``)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    timeout_type = (
        Timeout if timeout_help is None else Annotated[float, typer.Option(min=0.01, help=timeout_help)]
    )
    shared = [
        inspect.Parameter("redis_url", keyword, default=local_redis.DEFAULT_URL, annotation=RedisUrl),
        inspect.Parameter("prefix", keyword, default="sr", annotation=Prefix),
        inspect.Parameter("as_json", keyword, default=False, annotation=Json),
        inspect.Parameter("timeout", keyword, default=timeout, annotation=timeout_type),
    ]

    def register(command: Callable[..., None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "target"]

        @functools.wraps(command)
        def with_target(**options: Any) -> None:
            target = Target(**{p.name: options.pop(p.name) for p in shared})
            command(**options, target=target)

        # Typer reads the parameters from the signature: the command's own, then the shared ones.
        with_target.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
        app.command()(with_target)
        return command

    return register


def _fail(code: int, message: str, as_json: bool, *, json_logs: bool = False, **extra: Any) -> typer.Exit:
    if as_json:
        print(json.dumps({"error": message, **extra}))
    if json_logs:  # the operator's log format: event=invalid_option with its fields as keys
        fields = "".join(f" {key}={value!r}" for key, value in extra.items())
        event = f"event=invalid_option exit={code}{fields} error={message!r}"
        print(logs.json_line("stateful_route.operator", logging.ERROR, event), file=sys.stderr)
        return typer.Exit(code)
    # One line, for scripts; the message is plain text (brackets in it are not markup).
    err.print(Text.assemble(("error:", "red"), " ", literal(message)), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _admin(target: Target, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run one admin action; map typed errors to the documented exit codes."""
    from stateful_route.cli.admin import NotFound, connect

    async def go() -> T:
        async with connect(target.redis_url, target.prefix, target.timeout) as admin:
            return await action(admin)

    as_json = target.as_json
    try:
        return asyncio.run(go())
    except InvalidInput as exc:
        raise _fail(EXIT_INVALID, str(exc), as_json, field=exc.field) from exc
    except NotFound as exc:
        raise _fail(EXIT_NOT_FOUND, str(exc), as_json) from exc
    except NoAvailablePod as exc:
        raise _fail(EXIT_NO_POD, str(exc), as_json) from exc
    except LayoutTooNew as exc:
        raise _fail(EXIT_TOO_NEW, str(exc), as_json, found=exc.found, known=exc.known) from exc
    except StatefulRouteError as exc:
        raise _fail(EXIT_UNAVAILABLE, f"{redact_url(target.redis_url)}: {exc}", as_json) from exc


def _emit(data: Any, target: Target, table: Callable[[], Table | str]) -> None:
    if target.as_json:
        print(json.dumps(data))
    else:
        shown = table()
        if isinstance(shown, str):  # one line for scripts: never wrapped at the terminal's width
            out.print(literal(shown), soft_wrap=True)
        else:
            out.print(shown)


def _record_table(title: str, record: dict[str, Any]) -> Table:
    table = Table(title=literal(title), show_header=False)
    table.add_column("field")
    table.add_column("value")
    for name, value in record.items():
        table.add_row(name, literal(value))
    return table


@admin_command()
def pods(
    namespace: Namespace,
    service: Service,
    target: Target,
) -> None:
    """Show a route table: each pod's state, links, load, and the best pod for new users.

    Example: stateful-route pods games room --json
    """
    rows = _admin(target, lambda a: a.pods(namespace, service))

    def table() -> Table:
        t = Table(title=literal(f"{namespace}/{service}"))
        for column in ("pod", "state", "routable", "available", "links", "load", "best"):
            t.add_column(column, justify="right" if column in ("links", "load") else "left")
        for r in rows:
            state = r["state"] + (f" until {r['terminating_until']}" if r["terminating_until"] else "")
            yes = {True: "yes", False: "no"}
            t.add_row(str(r["pod"]), state, yes[r["routable"]], yes[r["available"]], f"{r['links']:,}",
                      str(r["load"]), "★" if r["best"] else "")  # fmt: skip
        return t

    _emit(rows, target, table)


@admin_command()
def lookup(
    namespace: Namespace,
    service: Service,
    uid: Uid,
    target: Target,
) -> None:
    """Show a user's stored link without changing anything (exit 1 if there is none).

    Example: stateful-route lookup games room user-42
    """
    link = _admin(target, lambda a: a.lookup(namespace, service, uid))
    _emit(link, target, lambda: _record_table(f"{uid} in {namespace}/{service}", link))


@admin_command()
def links(
    namespace: Namespace,
    uid: Uid,
    target: Target,
) -> None:
    """Show every service of a namespace the user is linked to (exit 1 if none).

    Example: stateful-route links games user-42 --json
    """
    found = _admin(target, lambda a: a.links(namespace, uid))
    _emit(found, target, lambda: _record_table(f"{uid} in {namespace}", found))


@admin_command()
def place(
    namespace: Namespace,
    service: Service,
    uid: Uid,
    target: Target,
) -> None:
    """Do what a gateway does: keep the user's routable link, or place it on the best pod.

    Writes a temporary link when the user had none (exit 4 if no pod is available).

    Example: stateful-route place games room user-42
    """
    pod = _admin(target, lambda a: a.place(namespace, service, uid))
    _emit({"uid": uid, "pod": pod}, target, lambda: f"{uid} -> pod {pod}")


def _routing(namespace: str, service: str, pod: int, state: RoutingState, target: Target) -> None:
    row = _admin(target, lambda a: a.set_routing(namespace, service, pod, state))
    _emit(row, target, lambda: f"pod {pod} of {namespace}/{service}: {row['routing']}")


@admin_command()
def drain(
    namespace: Namespace,
    service: Service,
    pod: Pod,
    target: Target,
) -> None:
    """Stop placing new users on a pod (its users stay): reports DenyNewCall for it.

    This is the pod's own report in Redis, so it works without Kubernetes; in a cluster the
    durable way is the annotation: kubectl annotate pod game-3 stateful-route.dev/routing-state=DenyNewCall

    Example: stateful-route drain games room 3
    """
    _routing(namespace, service, pod, RoutingState.DENY_NEW_CALL, target)


@admin_command()
def undrain(
    namespace: Namespace,
    service: Service,
    pod: Pod,
    target: Target,
) -> None:
    """Let a drained pod take new users again (an annotation, if set, still applies).

    Example: stateful-route undrain games room 3
    """
    _routing(namespace, service, pod, RoutingState.READY, target)


@admin_command(timeout=10.0)
def evict(
    namespace: Namespace,
    service: Service,
    pod: Pod,
    target: Target,
    rebind: Annotated[bool, typer.Option(help="Place the evicted users again at once.")] = False,
) -> None:
    """Remove every link to a pod; users are placed again at their next lookup (or now, --rebind).

    Drain the pod first, or the best pod for some of them may be this one again.

    Example: stateful-route drain games room 3 && stateful-route evict games room 3 --rebind
    """
    done = _admin(target, lambda a: a.evict(namespace, service, pod, rebind=rebind))
    _emit(done, target, lambda: f"evicted {done['removed']} links from pod {pod}; rebound {done['rebound']}")


@admin_command(
    timeout=30.0,
    timeout_help=f"Seconds to hand every user off before giving up (each Redis call waits at most "
    f"{HANDOFF_REDIS_WAIT:g} s).",
)
def handoff(
    namespace: Namespace,
    service: Service,
    pod: Pod,
    target: Target,
    pod_uid: Annotated[
        str | None,
        typer.Option(
            "--pod-uid",
            envvar="POD_UID",
            help="This pod's metadata.uid (downward API): its reports then apply only to this very "
            "pod, never to another pod at its ordinal.",
        ),
    ] = None,
) -> None:
    """For a pod's preStop hook: hand its users off to other pods, then let it go.

    Reports DenyNewCall (no new users), moves every user's link to the best available other pod
    (compare-and-swap; gateways are told at once), then reports Shutdown. Exit 0 when the pod
    holds no links, or only users no pod but outdated ones could take (the first pod of a
    rolling update: they wait for its replacement); 5 when some are left after --timeout (no
    other pod was available), after reporting Shutdown so the operator evicts them. Keep
    --timeout below the pod's terminationGracePeriodSeconds. Give the pod's uid (--pod-uid, or
    POD_UID from the downward API) so its reports belong to this pod alone.

    Example: stateful-route handoff games room 3 --timeout 20
    """
    wait = min(HANDOFF_REDIS_WAIT, target.timeout)
    done = _admin(
        replace(target, timeout=wait),
        lambda a: a.hand_off(namespace, service, pod, within=target.timeout, pod_uid=pod_uid),
    )
    if done["left"] > done["waiting"]:
        raise _fail(
            EXIT_TIMED_OUT,
            f"timed out after {target.timeout:g} s: {done['left']} users still linked to pod {pod} of "
            f"{namespace}/{service} (no other pod available, or not reached in time); "
            "reported Shutdown, the operator evicts them",
            target.as_json,
            **done,
        )
    waiting = f"; {done['waiting']} wait for an updated pod (only outdated ones take users)"
    said = f"handed off {done['moved']} users from pod {pod}{waiting if done['waiting'] else ''}"
    _emit(done, target, lambda: f"{said}; reported Shutdown")


@admin_command(timeout=5.0, timeout_help="Seconds each Redis call may take (a migration makes many).")
def migrate(
    namespace: Annotated[str | None, typer.Argument(help="Kubernetes namespace of the route.")] = None,
    service: Annotated[str | None, typer.Argument(help="The route's service; with --all, leave out.")] = None,
    *,
    all_routes: Annotated[
        bool, typer.Option("--all", help="Every route (of NAMESPACE if given) under the prefix.")
    ] = False,
    target: Target,
) -> None:
    """Bring a route written by an earlier release to this release's Redis layout, online.

    Moves each pod's users of layout 1 into its shards, checks every stored entry against its
    link, converts the phases and records the layout, at most 1,000 users per Redis call, while
    gateways and pods keep working. A route already migrated is checked again in full: run it
    once the last client of the earlier release is gone (what such a client did after the
    operator migrated the route is repaired then). Safe to stop and run again at any point; a
    second run changes nothing. Exit 6 if a newer release wrote the route (with --all: any of them, after
    migrating the others and listing every route).

    Example: stateful-route migrate games room --json; stateful-route migrate --all
    """
    if all_routes == (service is not None):
        raise typer.BadParameter("name NAMESPACE SERVICE, or --all (optionally with NAMESPACE)")
    done = _admin(target, lambda a: a.migrate(namespace, service))

    def table() -> Table:
        t = Table(title="migrate")
        for column in ("route", "layout", "moved", "stale removed", "checked", "phases", "done"):
            t.add_column(
                column, justify="right" if column in ("moved", "stale removed", "checked") else "left"
            )
        for m in done:
            before = "none" if m["layout_before"] is None else str(m["layout_before"])
            after = "–" if m["layout_after"] is None else str(m["layout_after"])
            finished = "yes" if m["done"] else ("newer" if "error" in m else "no")
            t.add_row(literal(f"{m['namespace']}/{m['service']}"), f"{before} → {after}", f"{m['moved']:,}",
                      f"{m['stale'] + m['dropped']:,}", f"{m['checked']:,}",
                      "converted" if m["phases_converted"] else "", finished)  # fmt: skip
        return t

    _emit(done, target, table)
    if any("error" in m for m in done):
        raise typer.Exit(EXIT_TOO_NEW)


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
    priority: Annotated[
        int | None,
        typer.Option(help="With --peering: the highest priority acts (random if unset, so replicas differ)."),
    ] = None,
    peering_lifetime: Annotated[
        int,
        typer.Option(
            help="With --peering: seconds a replica counts as alive after its last keep-alive, so how long "
            "a crashed active replica holds the standbys back."
        ),
    ] = 60,
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Serve Prometheus metrics on this port (/metrics).")
    ] = 9090,
    log_format: Annotated[str, typer.Option(help="Log lines as key=value (kv) or JSON (json).")] = "kv",
) -> None:
    """Run the operator: keep route tables, evict and rebind, mirror status into StatefulRoutes.

    Example: stateful-route operator --namespace games --redis-url redis://redis:6379/0
    """
    from stateful_route.controller.config import OperatorConfig, check_watch
    from stateful_route.controller.runner import run

    if namespace and all_namespaces:
        raise typer.BadParameter("use --namespace or --all-namespaces, not both")
    if not namespace and not all_namespaces:
        raise typer.BadParameter("name --namespace NS (repeatable) or --all-namespaces")
    if log_format not in ("kv", "json"):
        raise typer.BadParameter("--log-format is kv or json")
    fmt: LogFormat = "json" if log_format == "json" else "kv"
    try:  # every option checked before kopf starts: one line, exit 2
        check_url(redis_url)
        config = OperatorConfig(
            redis_url=redis_url,
            prefix=prefix,
            kubeconfig=kubeconfig,
            metrics_port=metrics_port,
            peering_lifetime=peering_lifetime,
        )
        check_watch(namespace or (), peering, priority, liveness or None)
    except InvalidInput as exc:
        raise _fail(EXIT_INVALID, str(exc), False, json_logs=fmt == "json", field=exc.field) from exc
    logs.configure(fmt)
    try:
        with _interruptible():
            asyncio.run(
                run(
                    config,
                    namespaces=namespace or (),
                    peering=peering,
                    priority=priority,
                    liveness=liveness or None,
                )
            )
    except InvalidInput as exc:  # raised before kopf starts (the metrics port in use)
        raise _fail(EXIT_INVALID, str(exc), False, json_logs=fmt == "json", field=exc.field) from exc


@app.command()
def demo(
    redis_url: RedisUrlIfNamed = None,
    duration: Annotated[float, typer.Option(min=5, help="Seconds the story lasts.")] = 45,
    pods: Annotated[int, typer.Option(min=3, max=50, help="Pods of the simulated StatefulSet.")] = 6,
    users: Annotated[int, typer.Option(min=1, help="Users online at once (they come and go).")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the story and the traffic.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON summary.")] = False,
) -> None:
    """Watch stateful-route work, no cluster needed: an emulated Kubernetes API, the real operator,
    gateways placing thousands of users, and a story (drain, delete, flap, scale up).

    Uses --redis-url or REDIS_URL (exit 3 if it does not answer), else 127.0.0.1:6379, else starts a
    private redis-server; touches only its own keys. Exits 0 when every invariant held, 1 otherwise,
    3 when Redis fails during the run.

    Example: stateful-route demo --duration 30 --pods 4 --users 2000 --seed 7
    """
    from stateful_route.demo.options import DemoOptions
    from stateful_route.demo.run import run_demo
    from stateful_route.demo.view import admin_hint, kubectl_hint, live_display, summary_table

    try:
        if redis_url is not None:
            check_url(redis_url)
    except InvalidInput as exc:
        raise _fail(EXIT_INVALID, str(exc), as_json, field=exc.field) from exc
    logs.configure("kv", level=40)  # the display tells the story; only errors are logged
    options = DemoOptions(duration=duration, pods=pods, users=users, seed=seed)

    def display(live: Any) -> contextlib.AbstractContextManager[object]:
        if as_json or not out.is_terminal:
            for hint in (kubectl_hint(live), admin_hint(live)):  # stdout stays the summary
                err.print(hint, highlight=False, soft_wrap=True, markup=False)
            return contextlib.nullcontext()
        return live_display(out, live)

    used = redis_url or local_redis.DEFAULT_URL
    try:
        with local_redis.redis_url(redis_url) as url, _interruptible():
            used = url
            summary = asyncio.run(_stopped_by_signals(run_demo(url, options, display)))
    except local_redis.NoRedis as exc:
        raise _fail(EXIT_INVALID, str(exc), as_json) from exc
    except local_redis.NamedRedisDown as exc:
        raise _fail(EXIT_UNAVAILABLE, str(exc), as_json) from exc
    except _REDIS_FAULTS as exc:
        # Redis answered the probe, then failed: at once (Sentinels that do not name a primary
        # yet), or at any later moment of the run, its cleanup included.
        raise _fail(EXIT_UNAVAILABLE, _fault_line(used, exc), as_json) from exc
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        if not out.is_terminal:
            for line in summary.story:
                out.print(line)
        out.print(summary_table(summary))
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(0 if summary.ok else 1)


def _fault_line(url: str, exc: Exception) -> str:
    """One line saying which Redis failed and how, with every URL's credentials hidden."""
    said = " ".join(str(faults.typed(exc)).split())
    return f"{redact_url(url)}: {redact_text(said)}"


async def _stopped_by_signals(work: Awaitable[T]) -> T:
    """Await ``work``; SIGTERM and SIGHUP (``timeout``, a cancelled CI job, ``docker stop``, a
    closed terminal) stop it as Ctrl-C does: the task is cancelled, so it can still summarise
    and clean up, then KeyboardInterrupt is raised if the cancellation got through."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    signalled: list[int] = []

    def stop(signum: int) -> None:
        signalled.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await work
    except asyncio.CancelledError:
        if not signalled:
            raise
        raise KeyboardInterrupt from None
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _print_version(asked: bool) -> None:
    if asked:
        print(f"stateful-route {VERSION}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version, exit."),
    ] = False,
) -> None:
    """Sticky, load-aware routing of users to StatefulSet pods."""


def main() -> None:
    """Console-script entry point."""
    app()
