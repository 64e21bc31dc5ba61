"""``rumor node leave`` and ``rumor cluster forget NODE``: membership by hand.

``node leave`` is what a Kubernetes ``preStop`` hook runs inside the pod, with no
argument: it finds the local node from the node's own settings (``RUMOR_HOST``,
``RUMOR_PORT``, HTTPS when ``RUMOR_TLS_CERT`` is set, checked against ``RUMOR_TLS_CA``)
and the admin key from ``RUMOR_ADMIN_KEY`` or ``RUMOR_ADMIN_KEY_FILE``; ``--url`` and
``--api-key`` override them. It waits for the node's handoff report.

``cluster forget NODE`` asks every live member to forget a dead (or left) member, so
tombstone purge stops waiting for it; a node that still sees it alive refuses (409), and
the command exits 5 (conflict).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from rumordb.cli.connect import (
    cacert,
    connection_options,
    json_option,
    resolve_api_key,
    resolve_urls,
)
from rumordb.cli.output import EXIT_CODES, ExitCode, emit_json, fail

# A wildcard bind address is reached on loopback.
LOCAL_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def local_node_url() -> str:
    """This machine's node, from the ``RUMOR_*`` settings it was started with."""
    host = os.environ.get("RUMOR_HOST", "127.0.0.1")
    host = LOCAL_HOSTS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if os.environ.get("RUMOR_TLS_CERT") else "http"
    return f"{scheme}://{host}:{os.environ.get('RUMOR_PORT', '8001')}"


def local_admin_key() -> str | None:
    key = os.environ.get("RUMOR_ADMIN_KEY")
    path = os.environ.get("RUMOR_ADMIN_KEY_FILE")
    if not key and path:
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(ExitCode.AUTH, f"RUMOR_ADMIN_KEY_FILE: {exc}")
    return key or None


def _local_verify() -> Any:
    """Check an HTTPS node against RUMOR_TLS_CA (presenting our cert under mutual TLS)."""
    ca = os.environ.get("RUMOR_TLS_CA")
    if not ca:
        return True
    import ssl

    context = ssl.create_default_context(cafile=ca)
    cert, key = os.environ.get("RUMOR_TLS_CERT"), os.environ.get("RUMOR_TLS_KEY")
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


def _post(url: str, key: str | None, timeout_s: float, verify: Any) -> tuple[int, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with httpx.Client(timeout=timeout_s, verify=verify, trust_env=False) as client:
            response = client.post(url, headers=headers)
    except httpx.HTTPError as exc:
        return 0, {"error": "unreachable", "detail": f"{type(exc).__name__}: {exc}"}
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"error": "bad_response", "detail": response.text[:200]}


_EXIT_FOR = {
    401: ExitCode.AUTH,
    403: ExitCode.AUTH,
    404: ExitCode.NOT_FOUND,
    409: ExitCode.CONFLICT,
}


@click.command("leave", epilog=EXIT_CODES)
@click.option("--url", help="The node (default: from RUMOR_HOST / RUMOR_PORT).")
@click.option("--api-key", help="Admin key (default: RUMOR_ADMIN_KEY or RUMOR_ADMIN_KEY_FILE).")
@click.option("--timeout-s", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="How long to wait for the node's handoff report.")  # fmt: skip
def leave(url: str | None, api_key: str | None, timeout_s: float) -> None:
    """Make the local node leave the cluster: announce `left`, hand its keys off (sharded)."""
    target = (url or local_node_url()).rstrip("/")
    verify = True if url else _local_verify()
    status, body = _post(target + "/admin/leave", api_key or local_admin_key(), timeout_s, verify)
    emit_json(body)
    if status != 200:
        fail(_EXIT_FOR.get(status, ExitCode.UNREACHABLE), f"{target}: leave failed ({status})")
    if body.get("remaining"):
        fail(ExitCode.UNREACHABLE, f"{body['remaining']} keys not handed off in time")


@click.command("forget", epilog=EXIT_CODES)
@click.argument("member")
@connection_options
@json_option
def forget(
    member: str, urls: tuple[str, ...], api_key: str | None, cluster_dir: Path, json_output: bool
) -> None:
    """Forget MEMBER (dead or left) on every live node, so tombstone purge resumes."""
    from rumordb.cli.probe import fetch_cluster

    key = resolve_api_key(api_key, cluster_dir)
    first = resolve_urls(urls, cluster_dir)[0]
    view = fetch_cluster(first, key)
    nodes = {m["id"]: m["url"] for m in view["members"] if m["state"] in ("alive", "suspect")}
    nodes[view["node_id"]] = first
    verify = cacert(cluster_dir)
    answers = {}
    for node_id, node_url in sorted(nodes.items()):
        if node_id == member:
            continue
        answers[node_id] = _post(f"{node_url}/admin/forget/{member}", key, 10.0, verify)
    if json_output:
        emit_json({n: {"status": s, **body} for n, (s, body) in answers.items()})
    else:
        for node_id, (status, body) in answers.items():
            click.echo(f"{node_id}: {'forgotten' if status == 200 else body.get('detail', status)}")
    worst = [s for s, _ in answers.values() if s not in (200, 404)]
    if worst:
        fail(_EXIT_FOR.get(worst[0], ExitCode.UNREACHABLE), f"{len(worst)} node(s) did not forget {member}")  # fmt: skip
    if not any(s == 200 for s, _ in answers.values()):
        fail(ExitCode.NOT_FOUND, f"{member} is not a member of this cluster")
