"""One settings object for a live node: flag ``--x-y`` <-> env ``RUMOR_X_Y`` <-> field ``x_y``.

pydantic-settings reads ``RUMOR_*`` variables; the ``rumor node`` command passes the flags
it was given as keyword arguments, which win over the environment. Every field is checked
here, once, so a bad value stops the node at start with a message that names the flag and
the variable instead of failing later inside a loop. ``load_settings`` turns pydantic's
errors into such messages (``ConfigError``).

Seeds may be written as ``http://a:8001,http://b:8001`` (what a shell or a compose file
makes easy) or as a JSON list; a seed without a scheme gets ``http://``.

Secrets (the cluster secret, its previous value during a rotation, the admin and reader
keys) may each come from a file instead (``--cluster-secret-file`` /
``RUMOR_CLUSTER_SECRET_FILE`` and so on: the Docker and Kubernetes secrets convention):
the file's text with one trailing newline stripped. A value and a file for the same
secret, or a file that cannot be read, stop the node at start. Every secret must be
strong (``secret_problem``): at least 128 bits written out, i.e. 22 characters (enough
for 16 random bytes in base64; 32 if it is all hexadecimal digits), not a known
placeholder (anything starting with ``change-me``, as in ``.env.example``).

TLS (``--tls-cert``, ``--tls-key``, ``--tls-ca``, all three or none; ``live.tls`` reads the
files): the node serves and calls HTTPS only, so it advertises ``https://`` and its seeds
and ``--advertise-url`` are reached over ``https://`` whatever scheme they were given.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import psutil
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rumordb.core.bounds import DEFAULT_MAX_CLOCK_SKEW_MS
from rumordb.core.node import NodeConfig
from rumordb.core.rumors import DEFAULT_DIRECT_MAIL_MAX

# Work per slice of an anti-entropy step on the event loop (core.config): measured at 1M
# keys with 1% missing, the widest step took 139 ms of CPU in one piece (load 12); in
# slices of 4 096 items the longest slice took 20 ms, the longest first slice (a leaf
# listing) 33 ms (load 21): half that for a margin.
ANTI_ENTROPY_SLICE_ITEMS = 2048
# Keys folded into the digest per tick (core.config): a restarted 1M-key node folds all of
# them in slices; 2 000 a slice took 50-100 ms of CPU at load 15 (the loop monitor).
DIGEST_FOLD_BATCH = 500

Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Durability = Literal["sync", "batch", "memory"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]

NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NODE_ID_FILE = "node_id"
UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::", ""})
SECRET_NAMES = ("cluster_secret", "cluster_secret_previous", "admin_key", "reader_key")
SECRET_FIELDS = frozenset(SECRET_NAMES)
FILE_SUFFIX = "_file"
MAX_SECRET_FILE_BYTES = 4096
MIN_SECRET_CHARS = 22  # 16 random bytes in base64 (url-safe or not): 128 bits
MIN_HEX_SECRET_CHARS = 32  # 16 random bytes in hexadecimal
MIN_DISTINCT_CHARS = 6  # "aaaa...a" is long but not a secret
PLACEHOLDER_PREFIX = "change-me"
KNOWN_PLACEHOLDERS = frozenset(
    {"a", "x", "s", "secret", "changeme", "change_me", "password", "admin", "reader", "test"}
)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message says which flag / variable to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUMOR_", extra="forbid")

    host: str = "127.0.0.1"
    port: Port = 8001
    node_id: str | None = None
    data_dir: Path = Path(".rumor/node")
    durability: Durability = "sync"
    cluster_secret: str | None = None
    cluster_secret_file: Path | None = None
    cluster_secret_previous: str | None = None  # still accepted while a rotation rolls out
    cluster_secret_previous_file: Path | None = None
    keys_file: Path | None = None
    admin_key: str | None = None
    admin_key_file: Path | None = None
    reader_key: str | None = None
    reader_key_file: Path | None = None
    broadcast: str = "auto"
    discovery_port: Port = 7946
    discovery_interval_ms: Positive = 1000
    seeds: Annotated[list[str], NoDecode] = []
    advertise_url: str | None = None
    sharding: bool = False
    replicas: Positive = 3
    fanout: Positive = 3
    direct_mail_max: NonNegative = DEFAULT_DIRECT_MAIL_MAX
    gossip_interval_ms: Positive = 200
    anti_entropy_interval_ms: Positive = 1000
    probe_interval_ms: Positive = 1000
    suspicion_mult: Positive = 3
    # Leaving and readiness (docs/kubernetes.md): a dead member is forgotten after this
    # long (0: never); a leaving node waits this long at most for its handoff; a node
    # with no peer reports ready (/ready) after this long alone.
    reap_dead_after_s: Annotated[float, Field(ge=0)] = 3 * 24 * 3600.0
    leave_timeout_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    leave_on_stop: bool = True  # SIGTERM: leave (announce, hand off) before exiting
    ready_alone_after_s: Annotated[float, Field(ge=0)] = 10.0
    retransmit_mult: Positive = 4
    max_key_bytes: Positive = 1024
    max_value_bytes: Positive = 1_048_576
    # Failed authentication, per client address: a token bucket of this many failures,
    # refilled at this rate; an empty bucket answers 429 (see live.auth.FailureLimiter).
    auth_failure_burst: Positive = 20
    auth_failure_refill_per_s: Annotated[float, Field(gt=0, le=1000)] = 1.0
    auth_failure_clients_max: Positive = 10_000  # addresses tracked, least recent forgotten
    # Watch streams (live.watch): the replay ring, how far a watcher may lag, how many.
    watch_ring_events: Positive = 4096
    watch_ring_bytes: Positive = 16 * 1024 * 1024
    watch_max_lag_events: Positive = 1024
    watch_max_watchers: Positive = 64
    # The HTTP edge (live.http_protocol): request head size, deadlines for a head and a
    # body to arrive whole (slowloris), open connections before new ones answer 503.
    max_head_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 16 * 1024
    head_timeout_ms: Positive = 10_000
    body_timeout_ms: Positive = 30_000
    max_connections: Positive = 1024
    allow_faults: bool = False
    clock_offset_ms: int = 0
    # Log every event-loop turn that takes this much CPU time, with what held it
    # (live.loop_monitor: "loop_busy"); 0: off.
    loop_monitor_ms: NonNegative = 0
    # HLCs from clients and peers at most this far ahead of this node's clock (core.bounds).
    max_clock_skew_ms: Positive = DEFAULT_MAX_CLOCK_SKEW_MS
    log_level: LogLevel = "info"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_client_auth: bool = False

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("must be a host name or an IP address, e.g. 127.0.0.2")
        return value

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        if value is not None:
            check_node_id(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in SECRET_NAMES:
            path = data.get(name + FILE_SUFFIX)
            if path is None:
                continue
            if data.get(name) is not None:
                raise ValueError(
                    f"{_flag(name)} and {_flag(name + FILE_SUFFIX)} are both set: give one"
                )
            data[name] = read_secret_file(name, Path(path))
        return data

    @field_validator(*SECRET_NAMES)
    @classmethod
    def _strong(cls, value: str | None) -> str | None:
        if value is not None:
            problem = secret_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("broadcast")
    @classmethod
    def _broadcast(cls, value: str) -> str:
        if value in ("auto", "off"):
            return value
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError("must be 'auto', 'off' or an IPv4 address") from None
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as error:
                    raise ValueError(f"not a JSON list: {error}") from None
            else:
                value = [part for part in (p.strip() for p in text.split(",")) if part]
        if isinstance(value, list | tuple):
            return [normalize_base_url(str(url)) for url in value]
        return value

    @field_validator("advertise_url")
    @classmethod
    def _advertise_url(cls, value: str | None) -> str | None:
        return None if value is None else normalize_base_url(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _tls(self) -> Settings:
        given = [f for f in ("tls_cert", "tls_key", "tls_ca") if getattr(self, f) is not None]
        if given and len(given) < 3:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise ValueError(
                f"--tls-cert, --tls-key and --tls-ca (RUMOR_TLS_*) go together; only {flags} given"
            )
        if self.tls_client_auth and not given:
            raise ValueError("--tls-client-auth needs --tls-cert, --tls-key and --tls-ca")
        if given:
            self.seeds = [https(url) for url in self.seeds]
            self.advertise_url = None if self.advertise_url is None else https(self.advertise_url)
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def node_config(self) -> NodeConfig:
        return NodeConfig(
            fanout=self.fanout,
            direct_mail_max=self.direct_mail_max,
            gossip_interval_ms=self.gossip_interval_ms,
            anti_entropy_interval_ms=self.anti_entropy_interval_ms,
            probe_interval_ms=self.probe_interval_ms,
            suspicion_mult=self.suspicion_mult,
            reap_dead_after_ms=round(self.reap_dead_after_s * 1000),
            retransmit_mult=self.retransmit_mult,
            sharding=self.sharding,
            replicas=self.replicas,
            max_key_bytes=self.max_key_bytes,
            max_clock_skew_ms=self.max_clock_skew_ms,
            anti_entropy_slice_items=ANTI_ENTROPY_SLICE_ITEMS,
            digest_fold_batch=DIGEST_FOLD_BATCH,
        )

    def require_cluster_secret(self) -> str:
        """The secret, or a ``ConfigError`` that tells the operator how to set one."""
        if self.cluster_secret is None:
            raise ConfigError(
                "no cluster secret: every node of a cluster needs the same one. Set "
                "--cluster-secret or RUMOR_CLUSTER_SECRET (or a file holding it: "
                "--cluster-secret-file / RUMOR_CLUSTER_SECRET_FILE), e.g. to the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self.cluster_secret

    def advertised_url(self) -> str:
        """The base URL peers should use: ``advertise_url``, else derived from host/port."""
        if self.advertise_url is not None:
            return self.advertise_url
        host = self.host
        if host in UNSPECIFIED_HOSTS:
            host = primary_ipv4() or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}"


def load_settings(**overrides: Any) -> Settings:
    """``Settings`` from the environment and ``overrides`` (flags); ``ConfigError`` if bad.

    ``None`` overrides are dropped, so unset flags fall back to ``RUMOR_*`` variables.
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        raise ConfigError(describe(error)) from None


def describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:  # a check across settings: its message names them
            lines.append(message)
            continue
        field = str(problem["loc"][0])
        got = problem.get("input")
        secret = field in SECRET_FIELDS
        shown = "" if isinstance(got, dict) or secret else f" (got {got!r})"
        where = f"{_flag(field)} (or its _FILE twin)" if secret else _flag(field)
        lines.append(f"{where}: {message}{shown}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _flag(field: str) -> str:
    return f"--{field.replace('_', '-')} / RUMOR_{field.upper()}"


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is too weak to use, or None. The text never repeats the secret."""
    if not secret.strip():
        return "must not be empty (leave it unset instead)"
    if secret.lower().startswith(PLACEHOLDER_PREFIX) or secret.lower() in KNOWN_PLACEHOLDERS:
        return (
            "is a placeholder (from .env.example?): set a random value, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    hexadecimal = set(secret) <= _HEX_DIGITS
    needed = MIN_HEX_SECRET_CHARS if hexadecimal else MIN_SECRET_CHARS
    if len(secret) < needed:
        return (
            f"is too short: a secret needs at least 128 random bits, i.e. {MIN_SECRET_CHARS}+ "
            f"characters ({MIN_HEX_SECRET_CHARS}+ if hexadecimal), got {len(secret)}; "
            "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if len(set(secret)) < MIN_DISTINCT_CHARS:
        return f"is not random: it uses fewer than {MIN_DISTINCT_CHARS} distinct characters"
    return None


def read_secret_file(name: str, path: Path) -> str:
    """A secret from ``path``: its text minus one trailing newline; ``ValueError`` if unusable."""
    setting = _flag(name + FILE_SUFFIX)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as error:
        raise ValueError(f"{setting}: cannot read {path}: {error.strerror or error}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{setting}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{setting}: {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text.strip():
        raise ValueError(f"{setting}: {path} is empty")
    return text


def check_node_id(value: str) -> str:
    if not NODE_ID_PATTERN.fullmatch(value):
        raise ValueError(
            "a node id is 1-64 characters from letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def normalize_base_url(url: str) -> str:
    """``http://host:port`` with no trailing slash; ``host:port`` gets ``http://``."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: only http:// and https:// URLs are supported")
    if not parts.hostname:
        raise ValueError(f"{url!r}: the URL has no host")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ValueError(f"{url!r}: the port must be 0..65535") from None
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a base URL has no query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def https(url: str) -> str:
    return "https://" + url.removeprefix("http://") if url.startswith("http://") else url


def primary_ipv4() -> str | None:
    """The first IPv4 address of an interface that is up and not loopback, if any."""
    stats = psutil.net_if_stats()
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        if name in stats and not stats[name].isup:
            continue
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


def load_or_create_node_id(data_dir: Path) -> str:
    """The node id kept in ``data_dir/node_id``; a new ``node-<8 hex>`` the first time."""
    path = Path(data_dir) / NODE_ID_FILE
    if path.exists():
        stored = path.read_text(encoding="utf-8").strip()
        try:
            return check_node_id(stored)
        except ValueError as error:
            raise ConfigError(f"{path} holds an invalid node id {stored!r}: {error}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    node_id = "node-" + secrets.token_hex(4)
    partial = path.with_name(f".{NODE_ID_FILE}.{os.getpid()}.tmp")
    partial.write_text(node_id + "\n", encoding="utf-8")
    os.replace(partial, path)  # atomic: a crash never leaves a half-written id
    return node_id
