"""``rumor node``: start one live node (uvicorn + uvloop + httptools, one process).

Every flag has a ``RUMOR_*`` twin. Flags default to None and only the flags the user gave
are passed to ``load_settings``, so an unset flag falls back to its environment variable
and then to the settings default: one source of truth, ``live.settings.Settings``.
"""

from __future__ import annotations

import inspect
import logging
import ssl
import sys
from pathlib import Path
from typing import Any

import structlog
import typer

from rumordb.cli.main import app

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def configure_logging(level: str) -> None:
    """Structured logs: JSON lines on stderr, uvicorn's own records (warnings up) included."""
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


@app.command("node")
def node(
    host: str | None = typer.Option(None, help="Bind address."),
    port: int | None = typer.Option(None, help="HTTP port."),
    node_id: str | None = typer.Option(None, help="Node id; default: kept in the data dir."),
    data_dir: Path | None = typer.Option(None, help="Data directory."),
    durability: str | None = typer.Option(None, help="sync | batch | memory."),
    cluster_secret: str | None = typer.Option(None, help="Shared HMAC secret."),
    keys_file: Path | None = typer.Option(None, help="Hashed API keys file."),
    admin_key: str | None = typer.Option(None, help="An admin API key (plaintext)."),
    reader_key: str | None = typer.Option(None, help="A reader API key (plaintext)."),
    broadcast: str | None = typer.Option(None, help="auto | off | IPv4 broadcast address."),
    discovery_port: int | None = typer.Option(None, help="UDP discovery port."),
    discovery_interval_ms: int | None = typer.Option(None, help="Announce interval."),
    seeds: str | None = typer.Option(None, help="Seed URLs, comma-separated."),
    advertise_url: str | None = typer.Option(None, help="URL peers should use for this node."),
    sharding: bool | None = typer.Option(None, "--sharding/--no-sharding", help="Hash sharding."),
    replicas: int | None = typer.Option(None, help="Owners per key when sharded."),
    fanout: int | None = typer.Option(None, help="Peers per gossip round."),
    gossip_interval_ms: int | None = typer.Option(None, help="Rumor round interval."),
    anti_entropy_interval_ms: int | None = typer.Option(None, help="Anti-entropy interval."),
    probe_interval_ms: int | None = typer.Option(None, help="Heartbeat probe interval."),
    suspicion_mult: int | None = typer.Option(None, help="Suspicion timeout multiplier."),
    retransmit_mult: int | None = typer.Option(None, help="Rumor retransmit multiplier."),
    max_key_bytes: int | None = typer.Option(None, help="Longest key, UTF-8 bytes."),
    max_value_bytes: int | None = typer.Option(None, help="Largest value, bytes."),
    allow_faults: bool | None = typer.Option(
        None, "--allow-faults/--no-allow-faults", help="Enable the /faults endpoints."
    ),
    clock_offset_ms: int | None = typer.Option(None, help="Shift this node's wall clock."),
    log_level: str | None = typer.Option(None, help="debug | info | warning | error."),
    tls_cert: Path | None = typer.Option(None, help="PEM certificate: serve HTTPS only."),
    tls_key: Path | None = typer.Option(None, help="PEM private key of --tls-cert."),
    tls_ca: Path | None = typer.Option(None, help="PEM CA that signed every node's cert."),
    tls_client_auth: bool | None = typer.Option(
        None,
        "--tls-client-auth/--no-tls-client-auth",
        help="Mutual TLS: peers and clients must present a certificate from --tls-ca.",
    ),
) -> None:
    """Start one RumorDB node (every flag also reads its RUMOR_* environment variable)."""
    given: dict[str, Any] = {k: v for k, v in locals().items() if v is not None}
    from rumordb.live.settings import ConfigError, load_settings
    from rumordb.live.tls import load_tls

    try:
        settings = load_settings(**given)
        settings.require_cluster_secret()
        tls = load_tls(settings)  # every TLS file checked before the port is bound
    except ConfigError as exc:
        typer.echo(f"rumor node: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    serve(settings, None if tls is None else tls.server)


def _show_env_twins() -> None:
    """Append each flag's environment twin to its help text (one rule, no copy per flag)."""
    for name, parameter in inspect.signature(node).parameters.items():
        info = parameter.default
        if isinstance(info, typer.models.OptionInfo):
            info.help = f"{info.help or ''} (env RUMOR_{name.upper()})".strip()


_show_env_twins()


def http_protocol(server_ssl: ssl.SSLContext | None) -> Any:
    """httptools; over TLS, with one write (one TLS record) per response (``live.coalesce``)."""
    if server_ssl is None:
        return "httptools"
    from rumordb.live.coalesce import CoalescingHttpToolsProtocol

    return CoalescingHttpToolsProtocol


def serve(settings: Any, server_ssl: ssl.SSLContext | None = None) -> None:
    """Run the node; with ``server_ssl`` it serves HTTPS only (a plain request is dropped)."""
    import uvicorn

    from rumordb.live.app import create_app

    log = structlog.get_logger("rumor.node")
    fastapi_app = create_app(settings)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                runner = fastapi_app.state.runner
                log.info(
                    "node_ready",
                    node_id=runner.node_id,
                    url=runner.url,
                    incarnation=runner.incarnation,
                    keys=runner.node.key_count()[0],
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
        http=http_protocol(server_ssl),
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=75,  # peers pool connections; they expire theirs after 30 s
        ssl_context_factory=None if server_ssl is None else (lambda config, default: server_ssl),
    )
    server = Server(config)
    server.run()
    if not fastapi_app.state.runner.started_once:
        raise typer.Exit(1)
