"""Measuring the live send path's constants for the simulator (``rumor sim calibrate``).

Framing bytes come from the real encoders: an ``Envelope`` with none, one and two
messages, the seal around a payload, the gossip client's request head. The receive cost
is the real app in-process (``create_app``, memory durability, no discovery) answering
sealed ``POST /gossip`` posts of real ``Push`` messages over ``httpx.ASGITransport``:
rounds of posts carrying one message alternate with rounds carrying ``WIDE`` messages
(the machine's speed swings, so both see the same swings), and the line through the two
medians splits the cost into a part per post and a part per message. The same posts to a
null ASGI app (it reads the body and answers 204) measure what the client and the
in-process transport cost; that is subtracted. uvicorn's HTTP parsing is not included. Times are
this process's CPU time (``time.process_time``), so other load on the machine matters less.
"""

from __future__ import annotations

import os
import platform
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from starlette.types import Receive, Scope, Send

from rumordb.core import Record, encode
from rumordb.core.hlc import pack
from rumordb.core.messages import Push, Update
from rumordb.live.app import create_app
from rumordb.live.gossip_client import GOSSIP_PATH, Envelope, post_head, seal_envelope
from rumordb.live.settings import Settings
from rumordb.live.wire import Signer

WIDE = 16  # messages per post in the wide rounds
VALUE_BYTES = 100
HOST = "127.0.0.1:18001"  # a typical loopback netloc, for the head's length


def framing_bytes() -> dict[str, int]:
    """Envelope, seal and head bytes around a post's messages, from the real encoders."""
    encoder = msgspec.msgpack.Encoder()
    body = b"x" * VALUE_BYTES
    empty = len(encoder.encode(Envelope("", [])))
    one = len(encoder.encode(Envelope("", [body])))
    two = len(encoder.encode(Envelope("", [body, body])))
    signer = Signer(secrets.token_urlsafe(16))
    head = post_head(httpx.URL(f"http://{HOST}{GOSSIP_PATH}"), "")
    return {
        "envelope_post_bytes": empty,
        "envelope_message_bytes": two - one - VALUE_BYTES,
        "seal_bytes": len(signer.seal(b"", time.time(), "", "")),
        "http_head_bytes": len(head) + len(b"\r\n\r\n"),
    }


async def receive_cost_us(rounds: int = 9, posts: int = 60) -> dict[str, float]:
    """The receiver's cost per post and per message, in microseconds: the real app minus
    a null app that only reads the body (the client's and the transport's share)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rumor-calibrate-") as tmp:
        settings = _settings(Path(tmp))
        signer = Signer(str(settings.cluster_secret))
        app = create_app(settings, discovery=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c0") as real,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=_null_app), base_url="http://c0"
            ) as null,
        ):
            samples: dict[tuple[str, int], list[float]] = {}
            counter = 0
            for _ in range(rounds):
                for name, http in (("real", real), ("null", null)):
                    for width in (1, WIDE):
                        started = time.process_time()
                        for _ in range(posts):
                            counter += 1
                            await _post(http, signer, counter, width)
                        per_post = (time.process_time() - started) / posts * 1e6
                        samples.setdefault((name, width), []).append(per_post)
    cost = {key: statistics.median(values) for key, values in samples.items()}
    narrow = cost[("real", 1)] - cost[("null", 1)]
    wide = cost[("real", WIDE)] - cost[("null", WIDE)]
    message = max(0.0, (wide - narrow) / (WIDE - 1))
    return {
        "post_cost_us": round(max(0.0, narrow - message), 1),
        "message_cost_us": round(message, 1),
    }


async def _null_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the request body and answers 204: what the client side alone costs."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _post(http: httpx.AsyncClient, signer: Signer, counter: int, width: int) -> None:
    stamp = pack(int(time.time() * 1000))
    value = b"v" * VALUE_BYTES
    updates = [
        encode(
            Push(
                "c1",
                [],
                [
                    Update(
                        f"k{counter}.{i}",
                        Record(value, "text/plain", {"c1": stamp + i}, stamp + i, "c1"),
                    )
                ],
            )
        )
        for i in range(width)
    ]
    frame = seal_envelope(signer, Envelope("c1", updates), time.time(), "c0")
    response = await http.post(GOSSIP_PATH, content=frame)
    if response.status_code not in (200, 204):
        raise RuntimeError(f"calibration post refused: {response.status_code} {response.text}")


def _settings(data_dir: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=18001,
        node_id="c0",
        data_dir=data_dir / "c0",
        durability="memory",
        cluster_secret=secrets.token_urlsafe(24),
        admin_key="admin-" + secrets.token_urlsafe(16),
        reader_key="reader-" + secrets.token_urlsafe(16),
        broadcast="off",
    )


def machine() -> dict[str, Any]:
    """What the constants were measured on."""
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "python": sys.version.split()[0],
        "load_1m": round(os.getloadavg()[0], 2),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
