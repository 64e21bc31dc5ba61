"""TLS options against a real TLS server on loopback: a private CA, mutual TLS.

RumorDB nodes speak plain HTTP (TLS is a proxy's job, see the README's security model),
so the server here is a minimal one that answers like a node and demands a client
certificate, with certificates made by ``openssl`` for this test only.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rumordb import Client, errors

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(where: Path) -> None:
    openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=rumordb-test-ca", cwd=where)  # fmt: skip
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=where)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1",
                "-extfile", "san.ext", cwd=where)  # fmt: skip


class NodeLike(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"over tls"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Rumor-Context", "ctx")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("tls")
    make_certificates(where)
    return where


@pytest.fixture
def server(certs: Path) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server.crt", certs / "server.key")
    context.load_verify_locations(certs / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no answer
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NodeLike)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.parametrize("transport", ["stdlib", "httpx"])
def test_mutual_tls_with_a_private_ca(server: str, certs: Path, transport: str) -> None:
    cert = (str(certs / "client.crt"), str(certs / "client.key"))
    with Client(server, verify=str(certs / "ca.crt"), cert=cert, transport=transport) as db:
        value = db.get("k")
    assert (value.value, value.context) == (b"over tls", "ctx")


@pytest.mark.parametrize("transport", ["stdlib", "httpx"])
def test_no_client_certificate_or_an_unknown_ca_is_refused(
    server: str, certs: Path, transport: str
) -> None:
    cert = (str(certs / "client.crt"), str(certs / "client.key"))
    for options in ({"verify": str(certs / "ca.crt")}, {"verify": True, "cert": cert}):
        with (
            Client(server, retries=0, transport=transport, **options) as db,  # type: ignore[arg-type]
            pytest.raises(errors.Unreachable),
        ):
            db.get("k")
