"""Python opcodes one ``GET /kv/{key}`` costs inside the app (no server, no sockets).

Wall time and even CPU time swing with the machine's load; the number of bytecodes the
app executes per request does not. This starts one in-memory node (``create_app``, its
lifespan), puts a key, then calls the ASGI app directly with a raw scope and counts every
opcode executed (``sys.settrace`` with ``f_trace_opcodes``) for one warm GET (``--cold``:
the GET right after a PUT of its key, which ``live.read_cache`` cannot answer; ``--miss``:
the first GET of a key never read), grouped by
function (or line). uvicorn's own share (parsing, the response send) is outside this count: see
``bench.request_cost`` for the whole server's CPU per request.

``--put``: the same count for warm ``PUT /kv/{key}`` requests instead (keys written
before), ``--batch N`` of them at once so that they share one group commit as concurrent
clients do; opcodes per PUT, the event loop's and the storage writer thread's
(``--durability``, default ``sync`` as a node runs) together, from the first request's
start until every client has its answer.

Run: ``python -m bench.get_opcodes [--top 15] [--lines] [--put [--batch 8]]``. Figures
are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from rumordb.live.app import create_app
from rumordb.live.settings import Settings

KEY = "bench-admin-key-0123456789abcdef"


def _scope(method: str, path: str, body: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"x-api-key", KEY.encode()),
            (b"content-type", b"application/octet-stream"),
            *([(b"content-length", str(len(body)).encode())] if method == "PUT" else []),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _call(app: Any, method: str, path: str, body: bytes = b"") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(method, path, body), receive, send)
    return sent


async def count(top: int, by_line: bool, cold: bool = False, miss: bool = False) -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            host="127.0.0.1",
            port=8000,
            node_id="bench",
            data_dir=Path(tmp) / "bench",
            durability="memory",
            cluster_secret="bench-secret-0123456789abcdef",
            admin_key=KEY,
            broadcast="off",
        )
        app = create_app(settings, discovery=False)
        async with app.router.lifespan_context(app):
            put = await _call(app, "PUT", "/kv/key1", b"v" * 100)
            assert put[0]["status"] in (200, 201), put
            for _ in range(3):
                await _call(app, "GET", "/kv/key1")
            per_module: collections.Counter[str] = collections.Counter()

            def tracer(frame: Any, event: str, arg: Any) -> Any:
                frame.f_trace_opcodes = True
                if event == "opcode" and frame.f_code.co_filename != __file__:  # not ours
                    code = frame.f_code
                    where = frame.f_lineno if by_line else code.co_name
                    per_module[f"{Path(code.co_filename).name}:{where}"] += 1
                return tracer

            if cold:  # a new version: the read cache (live.read_cache) misses once
                await _call(app, "PUT", "/kv/key1", b"w" * 100)
            path = "/kv/key1"
            if miss:  # a key never read before: what most reads over many keys are
                path = "/kv/key2"
                put = await _call(app, "PUT", path, b"x" * 100)
                assert put[0]["status"] in (200, 201), put
            sys.settrace(tracer)
            try:
                got = await _call(app, "GET", path)
            finally:
                sys.settrace(None)
            assert got[0]["status"] == 200, got
    print(f"opcodes per GET (app only): {sum(per_module.values())}")
    for name, n in per_module.most_common(top):
        print(f"{n:6d}  {name}")


async def count_put(top: int, by_line: bool, batch: int, durability: str) -> None:
    """Opcodes per PUT of ``batch`` concurrent PUTs of warm keys (one group commit)."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    per_module: collections.Counter[str] = collections.Counter()
    counting = threading.Event()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if not counting.is_set():
            return tracer if event != "call" else None
        frame.f_trace_opcodes = True
        if event == "opcode" and frame.f_code.co_filename != __file__:  # not ours
            code = frame.f_code
            where = frame.f_lineno if by_line else code.co_name
            per_module[f"{Path(code.co_filename).name}:{where}"] += 1
        return tracer

    threading.settrace(tracer)  # the storage writer thread, started by the lifespan
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            host="127.0.0.1",
            port=8000,
            node_id="bench",
            data_dir=Path(tmp) / "bench",
            durability=durability,  # type: ignore[arg-type]
            cluster_secret="bench-secret-0123456789abcdef",
            admin_key=KEY,
            broadcast="off",
            # Traced, a request runs ~50x slower: timers of a minute keep the ticks that
            # fall due meanwhile from being counted as the PUTs' work.
            probe_interval_ms=60_000,
            gossip_interval_ms=60_000,
            anti_entropy_interval_ms=60_000,
        )
        app = create_app(settings, discovery=False)
        async with app.router.lifespan_context(app):
            paths = [f"/kv/key{i}" for i in range(batch)]
            for _ in range(3):  # warm: every key held, every cache filled
                done = await asyncio.gather(*(_call(app, "PUT", p, b"v" * 100) for p in paths))
                assert all(d[0]["status"] in (200, 201) for d in done), done
            await asyncio.sleep(0.05)
            counting.set()
            sys.settrace(tracer)
            try:
                done = await asyncio.gather(*(_call(app, "PUT", p, b"w" * 100) for p in paths))
            finally:
                sys.settrace(None)
                counting.clear()
            assert all(d[0]["status"] == 200 for d in done), done
    threading.settrace(None)  # type: ignore[arg-type]
    total = sum(per_module.values())
    print(f"opcodes per PUT (app and storage thread, {batch} at once): {total / batch:.0f}")
    for name, n in per_module.most_common(top):
        print(f"{n / batch:8.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--lines", action="store_true", help="group by line, not function")
    parser.add_argument(
        "--cold", action="store_true", help="the GET right after a PUT of its key (no warm read)"
    )
    parser.add_argument("--miss", action="store_true", help="the GET of a key never read")
    parser.add_argument("--put", action="store_true", help="count warm PUTs, not a GET")
    parser.add_argument("--batch", type=int, default=1, help="--put: PUTs sent at once")
    parser.add_argument(
        "--durability", choices=("sync", "batch", "memory"), default="sync", help="--put"
    )
    args = parser.parse_args()
    if args.put:  # on uvloop, as ``rumor node`` runs: asyncio's own loop is Python code
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(count_put(args.top, args.lines, args.batch, args.durability))
        return
    asyncio.run(count(args.top, args.lines, args.cold, args.miss))


if __name__ == "__main__":
    main()
