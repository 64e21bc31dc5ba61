"""TLS: certificates, settings, start-up checks, and real HTTPS clusters on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from rumordb.live import certs
from rumordb.live.gossip_client import SENDER_HEADER, Envelope, seal_envelope
from rumordb.live.settings import ConfigError, load_settings
from rumordb.live.tls import load_tls
from rumordb.live.wire import Signer
from tests.live.harness import ADMIN, READER, RUMOR, SECRET, Cluster, tls_client
from tests.live.test_node_cmd import clean_env


def tls_settings(files: certs.NodeFiles, **overrides: object) -> dict[str, object]:
    return {
        "cluster_secret": SECRET,
        "tls_cert": files.cert,
        "tls_key": files.key,
        "tls_ca": files.ca,
        **overrides,
    }


# --- certificates ---------------------------------------------------------------------
def test_node_certificate_names_its_addresses_and_serves_as_server_and_client(
    tmp_path: Path,
) -> None:
    files = certs.ensure_node_files(tmp_path, "n1", ("127.0.0.2", "localhost"))
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.2")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert files.key.stat().st_mode & 0o077 == 0
    assert (tmp_path / certs.CA_KEY_FILE).stat().st_mode & 0o077 == 0


def test_existing_certificates_are_kept_and_new_nodes_share_the_ca(tmp_path: Path) -> None:
    first = certs.ensure_node_files(tmp_path, "n1")
    pem = first.cert.read_bytes()
    assert certs.ensure_node_files(tmp_path, "n1").cert.read_bytes() == pem
    second = certs.ensure_node_files(tmp_path, "n2")
    ca = x509.load_pem_x509_certificate(first.ca.read_bytes())
    x509.load_pem_x509_certificate(second.cert.read_bytes()).verify_directly_issued_by(ca)
    assert certs.cacert_path(tmp_path) == tmp_path / certs.CA_FILE
    assert certs.cacert_path(tmp_path / "elsewhere") is None


# --- settings and start-up checks -----------------------------------------------------
def test_tls_files_go_together(tmp_path: Path) -> None:
    files = certs.ensure_node_files(tmp_path, "n1")
    with pytest.raises(ConfigError, match="--tls-key"):
        load_settings(cluster_secret=SECRET, tls_cert=files.cert)
    with pytest.raises(ConfigError, match="--tls-client-auth needs"):
        load_settings(cluster_secret=SECRET, tls_client_auth=True)


def test_a_tls_node_advertises_https_and_reaches_its_seeds_over_https(tmp_path: Path) -> None:
    files = certs.ensure_node_files(tmp_path, "n1")
    settings = load_settings(
        **tls_settings(files, host="127.0.0.2", port=8443, seeds="127.0.0.3:8443,http://b:1")
    )
    assert settings.advertised_url() == "https://127.0.0.2:8443"
    assert settings.seeds == ["https://127.0.0.3:8443", "https://b:1"]
    assert load_settings(host="127.0.0.2", port=8001).advertised_url() == "http://127.0.0.2:8001"


def test_tls_settings_have_environment_twins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = certs.ensure_node_files(tmp_path, "n1")
    monkeypatch.setenv("RUMOR_TLS_CERT", str(files.cert))
    monkeypatch.setenv("RUMOR_TLS_KEY", str(files.key))
    monkeypatch.setenv("RUMOR_TLS_CA", str(files.ca))
    monkeypatch.setenv("RUMOR_TLS_CLIENT_AUTH", "true")
    settings = load_settings(cluster_secret=SECRET)
    assert (settings.tls_cert, settings.tls_key, settings.tls_ca) == (
        files.cert,
        files.key,
        files.ca,
    )
    assert settings.tls_client_auth and settings.advertised_url().startswith("https://")
    tls = load_tls(settings)
    assert tls is not None and tls.server.verify_mode == ssl.CERT_REQUIRED


def test_start_up_names_the_bad_tls_file(tmp_path: Path) -> None:
    files = certs.ensure_node_files(tmp_path / "a", "n1")
    other = certs.ensure_node_files(tmp_path / "b", "n1")  # another CA, another key
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate\n")
    cases = [
        ({"tls_cert": tmp_path / "missing.pem"}, "--tls-cert.*does not exist"),
        ({"tls_key": other.key}, "--tls-key.*not the private key"),
        ({"tls_ca": other.ca}, "not signed by the CA"),
        ({"tls_ca": broken}, "--tls-ca.*not a PEM certificate"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_tls(load_settings(**tls_settings(files, **overrides)))
    assert load_tls(load_settings(**tls_settings(files))) is not None


def test_an_encrypted_key_is_refused_instead_of_prompting(tmp_path: Path) -> None:
    files = certs.ensure_node_files(tmp_path, "n1")
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    locked = tmp_path / "locked-key.pem"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(ConfigError, match="the key is encrypted"):
        load_tls(load_settings(**tls_settings(files, tls_key=locked)))


def test_an_expired_certificate_stops_the_node(tmp_path: Path) -> None:
    authority = certs.load_or_create_authority(tmp_path)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    cert, key = certs.issue(authority, "old", ["127.0.0.1"], days=1, now=long_ago)
    files = certs.NodeFiles(tmp_path / "old.pem", tmp_path / "old-key.pem", tmp_path / "ca.pem")
    files.cert.write_bytes(certs.cert_pem(cert))
    files.key.write_bytes(certs.key_pem(key))
    with pytest.raises(ConfigError, match="valid only from"):
        load_tls(load_settings(**tls_settings(files)))


@pytest.mark.live
def test_rumor_node_refuses_to_start_with_a_missing_certificate(tmp_path: Path) -> None:
    files = certs.ensure_node_files(tmp_path, "n1")
    done = subprocess.run(
        [RUMOR, "node", "--data-dir", str(tmp_path), "--durability", "memory",
         "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(files.key),
         "--tls-ca", str(files.ca)],
        env=clean_env(RUMOR_CLUSTER_SECRET=SECRET),
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--tls-cert / RUMOR_TLS_CERT" in done.stderr and "nope.pem" in done.stderr


# --- real clusters --------------------------------------------------------------------
def sealed_gossip(recipient: str) -> bytes:
    return seal_envelope(Signer(SECRET), Envelope("intruder", []), time.time(), recipient)


@pytest.mark.live
def test_three_https_nodes_found_by_discovery_replicate(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(tls=True)
    nodes = [cluster.add(f"n{i}") for i in (1, 2, 3)]
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})
    view = cluster.client.get(nodes[0].url + "/cluster", headers=READER).json()
    assert view["url"] == nodes[0].url
    assert {m["url"] for m in view["members"]} >= {n.url for n in nodes[1:]}
    assert all(n.url.startswith("https://") for n in nodes)

    assert cluster.put(nodes[0], "secret", b"over tls").status_code in (200, 201)
    with httpx.Client(verify=tls_client(cluster.root, certificate=False)) as reader:
        for node in nodes[1:]:
            cluster.poll(
                lambda node=node: (
                    reader.get(node.url + "/kv/secret", headers=READER).content == b"over tls"
                ),
                15.0,
                f"the value on {node.node_id}",
            )
    plain = f"http://{nodes[0].host}:{nodes[0].port}/health"
    with pytest.raises(httpx.TransportError):
        httpx.get(plain, timeout=5.0)
    with pytest.raises(httpx.ConnectError):  # the system's CAs do not vouch for our nodes
        httpx.get(nodes[0].url + "/health", timeout=5.0)


@pytest.mark.live
def test_mutual_tls_refuses_peers_and_clients_without_a_certificate(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(tls=True, tls_client_auth=True)
    n1, n2 = cluster.add("n1"), cluster.add("n2")
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2"})  # the nodes' own certificates open gossip
    assert cluster.put(n1, "k", b"mutual").status_code in (200, 201)
    cluster.wait_value(n2, "k", b"mutual")

    gossip = {"content-type": "application/octet-stream", SENDER_HEADER: "intruder"}
    with httpx.Client(verify=tls_client(cluster.root, certificate=False), timeout=5.0) as bare:
        with pytest.raises(httpx.TransportError):
            bare.get(n1.url + "/kv/k", headers=READER)
        with pytest.raises(httpx.TransportError):
            bare.post(n2.url + "/gossip", content=sealed_gossip("n2"), headers=gossip)
    with httpx.Client(verify=tls_client(cluster.root), timeout=5.0) as holder:
        assert holder.get(n1.url + "/kv/k", headers=READER).content == b"mutual"
        answer = holder.post(n2.url + "/gossip", content=sealed_gossip("n2"), headers=gossip)
        assert answer.status_code in (200, 204)
        assert holder.get(n1.url + "/kv/k", headers=ADMIN).status_code == 200


@pytest.mark.live
def test_sharded_tls_nodes_joined_by_seeds_forward_over_https(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(tls=True)
    sharded = ("--sharding", "--replicas", "1", "--broadcast", "off")
    n1 = cluster.add("n1", *sharded)
    seed = f"{n1.host}:{n1.port}"  # no scheme: a TLS node reaches its seeds over https
    others = [cluster.add(f"n{i}", *sharded, "--seeds", seed) for i in (2, 3)]
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})
    for i in range(12):  # one owner per key: most keys live on another node than n1
        assert cluster.put(n1, f"k{i}", f"v{i}".encode()).status_code in (200, 201)
    for i in range(12):
        assert cluster.get(others[1], f"k{i}").content == f"v{i}".encode()
    metrics = cluster.client.get(n1.url + "/metrics", headers=READER).text
    ok = re.search(r'rumor_forwarded_requests_total\{outcome="ok"\} ([0-9.]+)', metrics)
    assert ok is not None and float(ok.group(1)) > 0, metrics
