"""``rumor cluster up --tls``: a local CA and node certificates, nodes on HTTPS only."""

from __future__ import annotations

import json

import httpx
import pytest

from rumordb.live import certs
from rumordb.live.tls import client_context
from tests.cli.harness import LocalCluster, eventually, rumor

pytestmark = pytest.mark.live


def test_cluster_up_tls_serves_https_with_its_own_ca(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    local = LocalCluster(tmp_path_factory.mktemp("tls"), nodes=2, extra=("--tls",))
    try:
        local.up()
        ca = certs.cacert_path(local.dir)
        assert ca is not None and local.document["cacert"] == str(ca.resolve())
        assert all(url.startswith("https://") for url in local.urls.values())
        headers = {"Authorization": f"Bearer {local.document['admin_key']}"}
        with httpx.Client(verify=client_context(ca), headers=headers, timeout=5.0) as client:
            client.put(local.urls["n1"] + "/kv/k", content=b"v").raise_for_status()
            eventually(
                lambda: client.get(local.urls["n2"] + "/kv/k").content == b"v", 15, "replicated"
            )
        with pytest.raises(httpx.TransportError):
            httpx.get(local.urls["n1"].replace("https://", "http://") + "/health", timeout=5.0)

        # the client commands: RUMOR_CACERT names the CA; without it the node is not trusted
        got = local.run("get", "k", node="n2", env={"RUMOR_CACERT": str(ca)})
        assert got.returncode == 0 and got.stdout == b"v"
        assert local.run("get", "k", node="n2").returncode == 4

        added = rumor("cluster", "add", "--dir", str(local.dir), "--json")  # same CA, new cert
        assert added.returncode == 0, added.stderr.decode()
        nodes = json.loads(added.stdout)["nodes"]
        assert [n["url"].split("://")[0] for n in nodes] == ["https"] * 3
        assert (local.dir / "n3-cert.pem").exists()
    finally:
        local.close()
