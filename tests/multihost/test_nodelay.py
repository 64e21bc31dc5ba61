"""One response costs one round trip on a delayed link (TCP_NODELAY on the node's sockets).

With Nagle on, a response written in two pieces (head, then body) holds the body until the
client's (delayed) ACK of the head arrives: two one-way delays instead of one. Here ``h1``
runs a node behind a 100 ms one-way delay (``Lab.delay``: a wire of two TUN devices and a
relay that holds each packet, ``tests.multihost.tun_wire``; works on kernels without
``sch_netem``); the control host measures a TCP handshake (one RTT) and a ``GET /health`` on a kept-alive
connection, and the test compares their ratio, not absolute times.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.multihost.cluster import HTTP_PORT, LabCluster
from tests.multihost.netns import Lab

pytestmark = pytest.mark.multihost

DELAY_MS = 100


def test_get_health_over_a_delayed_link_takes_one_round_trip(
    make_lab: Callable[[int], Lab], tmp_path: Path
) -> None:
    cluster = LabCluster(make_lab(1), tmp_path)
    cluster.start_all(["h1"])
    cluster.lab.delay("h1", DELAY_MS)
    address = cluster.lab.hosts["h1"].address
    done = cluster.lab.client("round-trips", "--host", address, "--port", str(HTTP_PORT))
    measured = json.loads(done.stdout)
    assert measured["status"] == 200
    assert measured["rtt_s"] >= DELAY_MS / 1000 * 0.9, "the delay is in place"
    ratio = measured["response_s"] / measured["rtt_s"]
    assert ratio < 1.3, f"a response took {ratio:.2f} round trips: {measured}"


def test_client_library_writes_and_reads_over_a_delayed_link_take_one_round_trip(
    make_lab: Callable[[int], Lab], tmp_path: Path
) -> None:
    """The client side too: ``rumordb``'s transports send a PUT's head and 8 KiB body,
    and the node answers a GET of it (``/kv``, not FastAPI), without waiting for an ACK."""
    cluster = LabCluster(make_lab(1), tmp_path)
    cluster.start_all(["h1"])
    cluster.lab.delay("h1", DELAY_MS)
    address = cluster.lab.hosts["h1"].address
    done = cluster.client("client-round-trips", "--host", address, "--port", str(HTTP_PORT))
    measured = json.loads(done.stdout)
    assert measured["rtt_s"] >= DELAY_MS / 1000 * 0.9, "the delay is in place"
    for transport in ("httpx", "stdlib"):
        assert measured[f"{transport}_put_status"] in (200, 201), measured
        assert measured[f"{transport}_get_status"] == 200, measured
        for request in ("put", "get"):
            ratio = measured[f"{transport}_{request}_s"] / measured["rtt_s"]
            assert ratio < 1.3, f"{transport} {request} took {ratio:.2f} round trips: {measured}"
