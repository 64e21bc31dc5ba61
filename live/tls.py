"""TLS for a node: the files checked at start, the server context and the peer context.

With ``--tls-cert/--tls-key/--tls-ca`` a node serves HTTPS only and reaches its peers
over HTTPS only, checking each peer's certificate against the CA and its name against the
peer's URL (so a node reachable at ``https://127.0.0.2:8001`` needs an IP SAN 127.0.0.2).
The same certificate is the node's client certificate: a peer with ``--tls-client-auth``
accepts only connections that present a certificate signed by the CA, clients and peers
alike. The HMAC on gossip stays: TLS hides and authenticates the channel, the HMAC binds a
message to the cluster secret.

``load_tls`` reads every file once, before the node binds its port, so a missing file, a
key that does not belong to the certificate or a certificate the CA did not sign stops
the node with a message naming the flag, instead of a handshake failure at every peer.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from rumordb.live.http_transport import PooledTransport
from rumordb.live.settings import ConfigError, Settings


@dataclass(frozen=True, slots=True)
class Tls:
    """The two contexts a TLS node uses: one to serve, one to call its peers."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    client_auth: bool


def load_tls(settings: Settings) -> Tls | None:
    """The node's TLS contexts, None without ``--tls-cert``; ``ConfigError`` if a file is bad."""
    if settings.tls_cert is None or settings.tls_key is None or settings.tls_ca is None:
        return None
    cert = _read("tls_cert", settings.tls_cert)
    _read("tls_key", settings.tls_key)
    ca = _read("tls_ca", settings.tls_ca)
    check_issued_by(settings.tls_cert, cert, settings.tls_ca, ca)
    return Tls(
        server=server_context(
            settings.tls_cert, settings.tls_key, settings.tls_ca, settings.tls_client_auth
        ),
        client=client_context(settings.tls_ca, settings.tls_cert, settings.tls_key),
        client_auth=settings.tls_client_auth,
    )


def server_context(cert: Path, key: Path, ca: Path, client_auth: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert, key)
    _load_ca(context, ca)
    context.verify_mode = ssl.CERT_REQUIRED if client_auth else ssl.CERT_NONE
    return context


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Verifies servers against ``ca`` (chain and host name); presents ``cert`` if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks chain and host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(context, ca)  # our CA only, not the system's: a peer is one of ours
    if cert is not None:
        _load_chain(context, cert, key)
    return context


def peer_transport(settings: Settings) -> PooledTransport | None:
    """The transport for gossip and forwarding: HTTPS with the node's contexts, or the default."""
    tls = load_tls(settings)
    return None if tls is None else PooledTransport(ssl_context=tls.client)


def check_issued_by(cert_path: Path, cert_pem: bytes, ca_path: Path, ca_pem: bytes) -> None:
    """The node's certificate must be signed by the CA it trusts, and valid now."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError(
            f"--tls-cert / RUMOR_TLS_CERT: {cert_path} is not a PEM certificate"
        ) from None
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise ConfigError(f"--tls-ca / RUMOR_TLS_CA: {ca_path} is not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(
            f"--tls-cert / RUMOR_TLS_CERT: {cert_path} is not signed by the CA in {ca_path}; "
            "peers that trust that CA would refuse this node"
        ) from None
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError(
            f"--tls-cert / RUMOR_TLS_CERT: {cert_path} is valid only from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )


def _read(field: str, path: Path) -> bytes:
    flag = f"--{field.replace('_', '-')} / RUMOR_{field.upper()}"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{flag}: {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a service's start.
    raise ConfigError(
        "--tls-key / RUMOR_TLS_KEY: the key is encrypted; give the node an unencrypted key "
        "file readable only by its user"
    )


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"--tls-key / RUMOR_TLS_KEY: {key} is not the private key of the certificate in "
            f"{cert} ({exc.reason or exc})"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: Path) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"--tls-ca / RUMOR_TLS_CA: {ca} holds no usable CA certificate ({exc})"
        ) from None
