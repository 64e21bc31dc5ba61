"""Certificates for a cluster: a local certificate authority and one certificate per node.

Why a CA of our own: TLS between nodes only protects anything if each side checks the
other against a trust root, and a self-signed certificate per node would make every node
trust every other one by hand. One CA signs every node's certificate; a node trusts the
CA (``--tls-ca``) and so every node at once, and a client needs just the CA file.

Each node certificate carries both ``serverAuth`` and ``clientAuth`` usages because a node
presents the same certificate as a server (to clients and peers) and as a client (when it
gossips to a peer that requires mutual TLS), and SANs for every name it is reached by
(IP addresses as IP SANs: hostname checking compares an IP URL only with IP SANs).
Keys are ECDSA P-256: a handshake costs a fraction of an RSA-2048 one.

``ensure_node_files`` lays the files out in a cluster directory (``rumor cluster up
--tls``): ``ca.pem``, ``ca-key.pem`` and ``<node>-cert.pem`` / ``<node>-key.pem``, keys
with mode 600; existing files are kept, so a restarted node keeps its certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CA_DAYS = 3650
NODE_DAYS = 825  # the longest validity that common TLS clients accept for a leaf
BACKDATE = datetime.timedelta(minutes=5)  # tolerate a little clock skew between machines

PrivateKey = ec.EllipticCurvePrivateKey
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA: its certificate and the key that signs node certificates."""

    cert: x509.Certificate
    key: PrivateKey


@dataclass(frozen=True, slots=True)
class NodeFiles:
    """Where one node's TLS material lives: what ``--tls-cert/--tls-key/--tls-ca`` take."""

    cert: Path
    key: Path
    ca: Path

    def node_args(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(self.ca)]


def new_authority(
    name: str = "RumorDB local CA", *, now: datetime.datetime | None = None
) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = (now or _utcnow()) - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def issue(
    authority: Authority,
    common_name: str,
    hosts: Sequence[str],
    *,
    days: int = NODE_DAYS,
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A certificate for ``hosts`` (IP addresses and DNS names), usable as server and client."""
    if not hosts:
        raise ValueError("a node certificate needs at least one IP address or DNS name")
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or _utcnow()) - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    return cert, key


def _sans(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # keep order, drop repeats
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` with mode 600 from the start, atomically (no half-written key)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(partial, path)


def load_or_create_authority(directory: Path) -> Authority:
    """The CA kept in ``directory`` (``ca.pem`` + ``ca-key.pem``), made the first time."""
    cert_path, key_path = directory / CA_FILE, directory / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, PrivateKey):
            raise ValueError(f"{key_path} is not an ECDSA key")
        return Authority(cert, key)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    authority = new_authority()
    write_private(key_path, key_pem(authority.key))  # the key first: a CA file means both
    write_private(cert_path, cert_pem(authority.cert))
    return authority


def ensure_node_files(
    directory: Path, node_id: str, hosts: Sequence[str] = ("127.0.0.1", "localhost")
) -> NodeFiles:
    """``node_id``'s certificate and key in ``directory``, issued by its CA if missing."""
    files = NodeFiles(
        directory / f"{node_id}-cert.pem", directory / f"{node_id}-key.pem", directory / CA_FILE
    )
    authority = load_or_create_authority(directory)
    if not (files.cert.exists() and files.key.exists()):
        cert, key = issue(authority, node_id, hosts)
        write_private(files.key, key_pem(key))
        write_private(files.cert, cert_pem(cert))
    return files


def cacert_path(cluster_dir: Path) -> Path | None:
    """The CA file of a local ``--tls`` cluster in ``cluster_dir``, if it has one.

    Client commands use it as their default ``--cacert``, like the keys of that directory.
    """
    path = cluster_dir / CA_FILE
    return path if path.exists() else None


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
