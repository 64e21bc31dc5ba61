"""Client-side tools that the multi-host tests run inside a lab namespace.

``ip netns exec <tag>-ctl python -m tests.multihost.client <command> ...``: the test
process lives in the root namespace, which has no route to the lab, so everything that
talks to the nodes runs here and hands back JSON (stdout or ``--out``).

Commands: ``probe`` (one HTTP GET), ``udp-send`` / ``udp-listen`` (datagram reachability),
``wait-ready`` (every node sees every member alive), ``workload`` (the set workload of
``live.checker``; history to ``--out``), ``converge`` (poll until identical data; snapshot
and seconds to ``--out``), ``watch`` (member-state changes seen by each node over time),
``clusters`` (every node's ``GET /cluster``), ``round-trips`` (a TCP handshake's time and
a kept-alive ``GET`` response's time, the fastest of ``--count`` each),
``client-round-trips`` (the same for a PUT and a GET through the client library's
transports).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from rumordb.live.checker import (
    Kind,
    Op,
    Workload,
    dump_history,
    dump_snapshot,
    load_history,
    record_reply,
    wait_identical,
)

MAX_DATAGRAMS = 100_000


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def probe(args: argparse.Namespace) -> int:
    try:
        reply = httpx.get(args.url, timeout=args.timeout, trust_env=False)
    except httpx.HTTPError as exc:
        print(json.dumps({"ok": False, "error": type(exc).__name__}))
        return 1
    print(json.dumps({"ok": reply.is_success, "status": reply.status_code}))
    return 0 if reply.is_success else 1


def _response(sock: socket.socket, request: bytes) -> bytes:
    """Send ``request``; read one whole response (it must carry Content-Length)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"!"
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    return head


def round_trips(args: argparse.Namespace) -> int:
    """Seconds of a TCP handshake (one RTT) and of one GET on a kept-alive connection."""
    host, port = args.host, args.port
    request = f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    handshakes, responses = [], []
    with socket.create_connection((host, port), timeout=10) as kept:
        kept.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _response(kept, request)  # warm: the server's connection set up, its code paged in
        for _ in range(args.count):
            start = time.perf_counter()
            socket.create_connection((host, port), timeout=10).close()
            handshakes.append(time.perf_counter() - start)
            start = time.perf_counter()
            head = _response(kept, request)
            responses.append(time.perf_counter() - start)
    status = int(head.split()[1])
    print(json.dumps({"status": status, "rtt_s": min(handshakes), "response_s": min(responses)}))
    return 0


def client_round_trips(args: argparse.Namespace) -> int:
    """Seconds of a TCP handshake and of a PUT and a GET on ``/kv`` sent by the client
    library's transports (kept-alive connections, Nagle as they leave it), the fastest of
    ``--count`` each: a request whose head and body wait for an ACK costs two."""
    from rumordb.api import Request
    from rumordb.transport import HttpxTransport, StdlibTransport

    node = f"http://{args.host}:{args.port}"
    value = b"v" * args.value_bytes
    put = Request("PUT", "/kv/nodelay", (("content-type", "application/octet-stream"),), value)
    get = Request("GET", "/kv/nodelay")
    handshakes = []
    for _ in range(args.count):
        start = time.perf_counter()
        socket.create_connection((args.host, args.port), timeout=10).close()
        handshakes.append(time.perf_counter() - start)
    measured: dict[str, Any] = {"rtt_s": min(handshakes)}
    for name, kind in (("httpx", HttpxTransport), ("stdlib", StdlibTransport)):
        pool = kind(_auth(args.api_key), 10.0)
        try:
            for label, request in (("put", put), ("get", get)):
                answers, times = [], []
                pool.send(node, request)  # warm: the connection opened, the code paged in
                for _ in range(args.count):
                    start = time.perf_counter()
                    answers.append(pool.send(node, request))
                    times.append(time.perf_counter() - start)
                measured[f"{name}_{label}_s"] = min(times)
                measured[f"{name}_{label}_status"] = getattr(answers[-1], "status", None)
        finally:
            pool.close()
    print(json.dumps(measured))
    return 0


def udp_send(args: argparse.Namespace) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for i in range(min(args.count, MAX_DATAGRAMS)):
            sock.sendto(f"{args.tag}:{i}".encode(), (args.to, args.port))
            time.sleep(args.interval)
    return 0


def udp_listen(args: argparse.Namespace) -> int:
    received = 0
    senders: set[str] = set()
    deadline = time.monotonic() + args.seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", args.port))
        print(json.dumps({"listening": True}), flush=True)
        while received < MAX_DATAGRAMS:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                _, (sender, _) = sock.recvfrom(2048)
            except TimeoutError:
                break
            received += 1
            senders.add(sender)
    print(json.dumps({"received": received, "senders": sorted(senders)}))
    return 0


def _cluster(client: httpx.Client, url: str, api_key: str | None) -> dict[str, Any] | None:
    try:
        reply = client.get(f"{url}/cluster", headers=_auth(api_key), timeout=1.0)
    except httpx.HTTPError:
        return None
    return reply.json() if reply.is_success else None


def _alive_ids(view: dict[str, Any] | None) -> set[str]:
    if view is None:
        return set()
    return {m["id"] for m in view.get("members", []) if m.get("state") == "alive"}


def wait_ready(args: argparse.Namespace) -> int:
    """Every node answers and sees ``--members`` members alive (itself included)."""
    start = time.monotonic()
    with httpx.Client(trust_env=False) as client:
        while time.monotonic() - start < args.timeout:
            views = [_cluster(client, url, args.api_key) for url in args.urls]
            if all(len(_alive_ids(view)) >= args.members for view in views):
                print(json.dumps({"ready_s": round(time.monotonic() - start, 3)}))
                return 0
            time.sleep(0.1)
        print(json.dumps({"ready": False, "alive": [len(_alive_ids(v)) for v in views]}))
    return 1


def clusters(args: argparse.Namespace) -> int:
    with httpx.Client(trust_env=False) as client:
        print(json.dumps({url: _cluster(client, url, args.api_key) for url in args.urls}))
    return 0


def watch(args: argparse.Namespace) -> int:
    """Append a JSON line (time, observer, member, state, incarnation) to ``--out`` each
    time a node's view of a member changes, until ``--seconds`` or the stop file."""
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    deadline = time.monotonic() + args.seconds
    stop = Path(args.stop_file) if args.stop_file else None
    with httpx.Client(trust_env=False) as client, Path(args.out).open("a") as out:
        while time.monotonic() < deadline and not (stop and stop.exists()):
            for url in args.urls:
                view = _cluster(client, url, args.api_key)
                if view is None:
                    continue
                for member in view.get("members", []):
                    state = (member["state"], int(member.get("incarnation", 0)))
                    if seen.get((view["node_id"], member["id"])) == state:
                        continue
                    seen[(view["node_id"], member["id"])] = state
                    event = {
                        "t": time.time(),
                        "observer": view["node_id"],
                        "member": member["id"],
                        "state": state[0],
                        "incarnation": state[1],
                    }
                    out.write(json.dumps(event) + "\n")
                    out.flush()
            time.sleep(args.interval)
    return 0


def workload(args: argparse.Namespace) -> int:
    load = Workload(
        urls=args.urls,
        api_key=args.api_key,
        prefix=args.prefix,
        keys=args.keys,
        rate=args.rate,
        duration_s=args.duration,
        delete_ratio=args.delete_ratio,
        seed=args.seed,
        timeout_s=args.op_timeout,
    )

    async def go() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            await load.run(client)

    asyncio.run(go())
    Path(args.out).write_bytes(dump_history(load.history))
    return 0


def converge(args: argparse.Namespace) -> int:
    keys = {op.key for op in load_history(Path(args.history).read_bytes())} if args.history else ()

    trace: list[tuple[float, int]] = []

    async def go() -> tuple[bytes, float | None, float]:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            started_at = time.time()
            snap, took_s = await wait_identical(
                client, args.urls, keys, args.prefix, args.api_key, args.timeout, trace=trace
            )
        return dump_snapshot(snap), took_s, started_at

    snap_bytes, took_s, started_at = asyncio.run(go())
    Path(args.out).write_bytes(snap_bytes)
    identical_at = None if took_s is None else started_at + took_s
    result = {"identical_s": took_s, "identical_at": identical_at, "trace": trace[:200]}
    print(json.dumps(result))
    return 0


def sequence(args: argparse.Namespace) -> int:
    """Run scripted steps in order: ``{"op": "put"|"delete", "node": i, "key": k}`` (logged
    like the workload's operations) or ``{"op": "wait_absent", "key": k, "timeout": s}``
    (until every node answers 404 for the key's metadata: its tombstone is purged)."""
    steps = json.loads(args.steps)
    history: list[Op] = []

    async def go() -> None:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            for step in steps:
                if step["op"] == "wait_absent":
                    await _wait_absent(client, args, step["key"], float(step["timeout"]))
                    continue
                kind = Kind.DELETE if step["op"] == "delete" else Kind.WRITE
                op = Op(
                    id=len(history), kind=kind, key=step["key"], node=args.urls[step["node"]],
                    invoked_s=time.time(), value=f"seq:{len(history)}" if kind is Kind.WRITE else None,
                )  # fmt: skip
                history.append(op)
                url = f"{op.node}/kv/{op.key}"
                headers = _auth(args.api_key)
                if op.value is not None:
                    reply = await client.put(url, content=op.value.encode(), headers=headers)
                else:
                    reply = await client.delete(url, headers=headers)
                record_reply(op, reply.status_code, reply.json())
                op.completed_s = time.time()

    asyncio.run(go())
    Path(args.out).write_bytes(dump_history(history))
    return 0


async def _wait_absent(
    client: httpx.AsyncClient, args: argparse.Namespace, key: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        codes = [
            (await client.get(f"{url}/kv/{key}", params={"meta": "true"}, headers=_auth(
                args.api_key))).status_code
            for url in args.urls
        ]  # fmt: skip
        if all(code == 404 for code in codes):
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{key} still present somewhere after {timeout_s} s")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tests.multihost.client")
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=1.0)
    p = sub.add_parser("round-trips")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/health")
    p.add_argument("--count", type=int, default=5)
    p = sub.add_parser("client-round-trips")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--value-bytes", type=int, default=8192)
    p.add_argument("--api-key")
    p = sub.add_parser("udp-send")
    p.add_argument("--to", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--tag", default="x")
    p = sub.add_parser("udp-listen")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=2.0)
    for name in ("wait-ready", "clusters", "watch", "workload", "converge", "sequence"):
        p = sub.add_parser(name)
        p.add_argument("--urls", type=lambda s: s.split(","), required=True)
        p.add_argument("--api-key")
        if name == "wait-ready":
            p.add_argument("--members", type=int, required=True)
            p.add_argument("--timeout", type=float, default=30.0)
        if name == "watch":
            p.add_argument("--seconds", type=float, default=60.0)
            p.add_argument("--interval", type=float, default=0.1)
            p.add_argument("--stop-file")
            p.add_argument("--out", required=True)
        if name == "sequence":
            p.add_argument("--steps", required=True)
            p.add_argument("--out", required=True)
        if name in ("workload", "converge"):
            p.add_argument("--prefix", default="chk/")
            p.add_argument("--out", required=True)
        if name == "workload":
            p.add_argument("--keys", type=int, default=100)
            p.add_argument("--rate", type=float, default=50.0)
            p.add_argument("--duration", type=float, default=10.0)
            p.add_argument("--delete-ratio", type=float, default=0.1)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--op-timeout", type=float, default=2.0)
        if name == "converge":
            p.add_argument("--history")
            p.add_argument("--timeout", type=float, default=60.0)
    return top


COMMANDS = {
    "probe": probe,
    "round-trips": round_trips,
    "client-round-trips": client_round_trips,
    "udp-send": udp_send,
    "udp-listen": udp_listen,
    "wait-ready": wait_ready,
    "clusters": clusters,
    "watch": watch,
    "workload": workload,
    "converge": converge,
    "sequence": sequence,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
