"""``rumor node``: start one live node (uvicorn + uvloop + httptools, one process).

Every flag has a ``RUMOR_*`` twin. Flags default to None and only the flags the user gave
are passed to ``load_settings``, so an unset flag falls back to its environment variable
and then to the settings default: one source of truth, ``live.settings.Settings``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rumordb.cli.members import leave

if TYPE_CHECKING:
    from rumordb.live.loop_monitor import Busy, LoopMonitor

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def configure_logging(level: str) -> None:
    """Structured logs: JSON lines on stderr, uvicorn's own records (warnings up) included."""
    import structlog

    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, 20)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


# (flag, type, help): every flag defaults to None so that only the flags given reach
# load_settings; its RUMOR_* twin is appended to the help text by one rule, below.
NODE_OPTIONS: list[tuple[str, Any, str]] = [
    ("--host", str, "Bind address."),
    ("--port", int, "HTTP port."),
    ("--node-id", str, "Node id; default: kept in the data dir."),
    ("--data-dir", click.Path(path_type=Path), "Data directory."),
    ("--durability", str, "sync | batch | memory."),
    ("--cluster-secret", str, "Shared HMAC secret."),
    ("--cluster-secret-file", click.Path(path_type=Path), "File holding the secret."),
    ("--cluster-secret-previous", str, "Old secret, still accepted."),
    ("--cluster-secret-previous-file", click.Path(path_type=Path), "File: the old secret."),
    ("--keys-file", click.Path(path_type=Path), "Hashed API keys file."),
    ("--admin-key", str, "An admin API key (plaintext)."),
    ("--admin-key-file", click.Path(path_type=Path), "File holding the admin key."),
    ("--reader-key", str, "A reader API key (plaintext)."),
    ("--reader-key-file", click.Path(path_type=Path), "File holding the reader key."),
    ("--broadcast", str, "auto | off | IPv4 broadcast address."),
    ("--discovery-port", int, "UDP discovery port."),
    ("--discovery-interval-ms", int, "Announce interval."),
    ("--seeds", str, "Seed URLs, comma-separated."),
    ("--advertise-url", str, "URL peers should use for this node."),
    ("--sharding/--no-sharding", bool, "Hash sharding."),
    ("--replicas", int, "Owners per key when sharded."),
    ("--fanout", int, "Peers per gossip round."),
    ("--gossip-interval-ms", int, "Rumor round interval."),
    ("--anti-entropy-interval-ms", int, "Anti-entropy interval."),
    ("--probe-interval-ms", int, "Heartbeat probe interval."),
    ("--suspicion-mult", int, "Suspicion timeout multiplier."),
    ("--reap-dead-after-s", float, "Forget a member dead this long; 0: never (3 days)."),
    ("--leave-timeout-s", float, "Longest wait for a leaving node's handoff (60)."),
    ("--leave-on-stop/--no-leave-on-stop", bool, "SIGTERM leaves the cluster first (on)."),
    ("--ready-alone-after-s", float, "Ready with no peer after this long (10)."),
    ("--retransmit-mult", int, "Rumor retransmit multiplier."),
    ("--max-key-bytes", int, "Longest key, UTF-8 bytes."),
    ("--max-value-bytes", int, "Largest value, bytes."),
    ("--watch-ring-events", int, "Changes kept for watchers to resume from."),
    ("--watch-ring-bytes", int, "Bytes of changes kept for watchers."),
    ("--watch-max-lag-events", int, "Changes a watcher may lag before it is dropped."),
    ("--watch-max-watchers", int, "Watch streams open at once."),
    ("--max-head-bytes", int, "Largest request head (431 beyond)."),
    ("--head-timeout-ms", int, "A request head must arrive within (408)."),
    ("--body-timeout-ms", int, "A request body must arrive within (408)."),
    ("--max-connections", int, "Open connections before 503."),
    ("--allow-faults/--no-allow-faults", bool, "Enable the /faults endpoints."),
    ("--auth-failure-burst", int, "Failed auths before 429."),
    ("--auth-failure-refill-per-s", float, "Failed auths/s allowed."),
    ("--auth-failure-clients-max", int, "Client addresses tracked."),
    ("--clock-offset-ms", int, "Shift this node's wall clock."),
    ("--loop-monitor-ms", int, "Log loop turns using this much CPU, with stacks (0: off)."),
    ("--max-clock-skew-ms", int, "Refuse HLCs further ahead of this clock."),
    ("--log-level", str, "debug | info | warning | error."),
    ("--tls-cert", click.Path(path_type=Path), "PEM certificate: serve HTTPS only."),
    ("--tls-key", click.Path(path_type=Path), "PEM private key of --tls-cert."),
    ("--tls-ca", click.Path(path_type=Path), "PEM CA that signed every node's cert."),
    (
        "--tls-client-auth/--no-tls-client-auth",
        bool,
        "Mutual TLS: peers and clients need a cert from --tls-ca.",
    ),
]


def _option(flag: str, kind: Any, text: str) -> Callable[[Any], Any]:
    name = flag.split("/")[0].removeprefix("--").replace("-", "_")
    env = f"RUMOR_{name.upper()}"
    if kind is bool:
        return click.option(flag, name, default=None, help=f"{text} (env {env})")
    return click.option(flag, name, type=kind, default=None, help=f"{text} (env {env})")


def _with_node_options(function: Any) -> Any:
    for flag, kind, text in reversed(NODE_OPTIONS):
        function = _option(flag, kind, text)(function)
    return function


@click.group("node", invoke_without_command=True)
@_with_node_options
@click.pass_context
def node(context: click.Context, /, **flags: Any) -> None:
    """Start one RumorDB node (every flag also reads its RUMOR_* environment variable).

    `rumor node leave` makes the running local node leave the cluster instead.
    """
    if context.invoked_subcommand is not None:
        return
    given: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    from rumordb.live.settings import ConfigError, load_settings
    from rumordb.live.tls import load_tls

    try:
        settings = load_settings(**given)
        settings.require_cluster_secret()
        tls = load_tls(settings)  # every TLS file checked before the port is bound
    except ConfigError as exc:
        click.echo(f"rumor node: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    configure_logging(settings.log_level)
    serve(settings, None if tls is None else tls.server)


node.add_command(leave)


def http_protocol(settings: Any, server_ssl: ssl.SSLContext | None) -> Any:
    """httptools with the edge's bounds (``live.http_protocol``, limits from ``settings``);
    over TLS, with one write (one TLS record) per response (``live.coalesce``)."""
    from rumordb.live.http_protocol import BoundedHttpToolsProtocol, EdgeLimits

    limits = EdgeLimits(
        max_head_bytes=settings.max_head_bytes,
        head_timeout_s=settings.head_timeout_ms / 1000,
        body_timeout_s=settings.body_timeout_ms / 1000,
        max_connections=settings.max_connections,
    )
    base: type[BoundedHttpToolsProtocol] = BoundedHttpToolsProtocol
    if server_ssl is not None:
        from rumordb.live.coalesce import CoalescingHttpToolsProtocol

        base = CoalescingHttpToolsProtocol
    return type(base.__name__, (base,), {"limits": limits})


GC_GEN0_THRESHOLD = 5000  # CPython's default, 700, collects every few batch items


def tune_gc() -> None:
    """Freeze what start-up built (modules, loaded records) and collect the young less often.

    A batch of 1 000 writes allocates a few container objects per item; at the default
    threshold the young-generation collections cost about 30% of ingest (9.4k vs 13.9k
    keys/s measured in one process). Freezing moves everything alive now out of every
    future collection's scan.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def loop_monitor(threshold_ms: int, log: Any) -> LoopMonitor | None:
    """A monitor that logs each loop turn of ``threshold_ms`` of CPU or more (0: none)."""
    if not threshold_ms:
        return None
    from rumordb.live.loop_monitor import LoopMonitor

    def busy(turn: Busy) -> None:
        log.warning(
            "loop_busy", cpu_ms=turn.cpu_ms, wall_ms=turn.wall_ms, gc_ms=turn.gc_ms,
            mono=round(turn.mono, 3), stacks=[list(stack) for stack in turn.stacks],
        )  # fmt: skip

    return LoopMonitor(threshold_ms, busy)


def serve(settings: Any, server_ssl: ssl.SSLContext | None = None) -> None:
    """Run the node; with ``server_ssl`` it serves HTTPS only (a plain request is dropped)."""
    import structlog
    import uvicorn

    from rumordb.live.app import create_app
    from rumordb.live.heap import HeapFreezer

    log = structlog.get_logger("rumor.node")
    fastapi_app = create_app(settings)
    monitor = loop_monitor(settings.loop_monitor_ms, log)
    freezing: list[asyncio.Task[None]] = []

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            if monitor is not None:
                monitor.stop()
            for task in freezing:
                task.cancel()
            # Watch streams never end on their own: end them, or stopping waits out the grace.
            runner = fastapi_app.state.runner
            if runner.running:
                runner.watch.close_all()
            await super().shutdown(sockets)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                tune_gc()
                if monitor is not None:  # from the moment it listens: stalls delay answers
                    monitor.start(asyncio.get_running_loop())
                runner = fastapi_app.state.runner
                freezer = HeapFreezer(lambda: len(runner.node.store))  # live.heap: why
                freezing.append(asyncio.get_running_loop().create_task(freezer.run()))
                log.info(
                    "node_ready",
                    node_id=runner.node_id,
                    url=runner.url,
                    incarnation=runner.incarnation,
                    keys=runner.node.view.key_count()[0],
                    durability=settings.durability,
                    sharding=settings.sharding,
                    tls=settings.tls,
                    tls_client_auth=settings.tls_client_auth,
                )

    config = uvicorn.Config(
        fastapi_app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=http_protocol(settings, server_ssl),
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=75,  # peers pool connections; they expire theirs after 30 s
        # The connection cap is the protocol's (a JSON 503): uvicorn's limit_concurrency
        # would answer text/plain. Pending connections the kernel queues before accept:
        backlog=2048,
        ssl_context_factory=None if server_ssl is None else (lambda config, default: server_ssl),
    )
    server = Server(config)
    server.run()
    if not fastapi_app.state.runner.started_once:
        raise click.exceptions.Exit(1)
