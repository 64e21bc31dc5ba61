"""Client commands: ``rumor put/get/delete/list/why/status`` and ``rumor chaos ...``.

They feel like redis-cli and nodetool for people and behave like tools for scripts: human
output by default, ``--json`` for a stable machine shape, and exit codes a shell can test.
Every HTTP error is translated once, here at the edge, into one of those codes:

    0 ok   1 not found   2 usage / rejected request   3 auth   4 unreachable or server error
    5 conflict (If-Match mismatch, or --create on an existing key)

The endpoint comes from ``--url`` / ``RUMOR_URL`` and the key from ``--api-key`` /
``RUMOR_API_KEY``, else from the admin key of the local cluster in ``.rumor/credentials``,
so that after ``rumor cluster up`` the commands need no flags at all. HTTPS nodes are
checked against ``RUMOR_CACERT`` (a CA file), else the CA of ``rumor cluster up --tls`` in
``.rumor/ca.pem``, else the system's CAs.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import os
import ssl
import sys
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Column, Table

from rumordb.cli import credentials
from rumordb.cli.main import app
from rumordb.core.merge import Outcome, decide
from rumordb.core.record import Record

DEFAULT_URL = "http://127.0.0.1:8001"
TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 2.0  # per node, when asking every member of the cluster
LIST_PAGE_MAX = 1000  # the server's page limit
MAX_NODES = 256  # bound on members a fan-out command contacts
MAX_STDIN_BYTES = 64 * 1024 * 1024  # far above any node's --max-value-bytes

PIPE_WIDTH = 160  # rich's 80 columns would fold URLs in tables piped to grep or a file


def _console(to_stderr: bool) -> Console:
    stream = sys.stderr if to_stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=to_stderr, highlight=False, soft_wrap=True, width=width)


stdout = _console(to_stderr=False)
stderr = _console(to_stderr=True)


EXIT_CODES = (
    "Exit codes: 0 ok, 1 not found, 2 usage or invalid request, 3 auth, "
    "4 unreachable or server error, 5 conflict (If-Match / --create)."
)


class ExitCode(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    USAGE = 2
    AUTH = 3
    UNREACHABLE = 4
    CONFLICT = 5


UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="RUMOR_URL", help="Node to talk to (env RUMOR_URL)."),
]
UrlsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--url",
        envvar="RUMOR_URL",
        show_default=False,
        help="Node URL (env RUMOR_URL). Once: the other nodes come from its /cluster. "
        "Repeated (or comma-separated): exactly these nodes, for clusters whose advertised "
        f"addresses you cannot reach (Docker). Default {DEFAULT_URL}.",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="RUMOR_API_KEY",
        show_default=False,
        help="API key (env RUMOR_API_KEY); default: the admin key in .rumor/credentials.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def fail(code: ExitCode, message: str) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(int(code))


def emit_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------- HTTP edge


def resolve_api_key(api_key: str | None) -> str | None:
    if api_key:
        return api_key
    try:
        return credentials.admin_key_from(credentials.DEFAULT_DIR)
    except credentials.CredentialsError as exc:
        fail(ExitCode.AUTH, str(exc))


def split_urls(urls: list[str] | None) -> list[str]:
    """``--url a --url b,c`` and ``RUMOR_URL="a b"`` all name the nodes a, b and c."""
    found = [part.strip().rstrip("/") for url in urls or [] for part in url.split(",")]
    found = [url for url in found if url]
    for url in found:
        if not url.startswith(("http://", "https://")):
            fail(ExitCode.USAGE, f"--url must start with http:// or https://, got {url!r}")
    return found[:MAX_NODES] or [DEFAULT_URL]


LOCAL_CA = credentials.DEFAULT_DIR / "ca.pem"  # what `rumor cluster up --tls` writes


def tls_verify() -> ssl.SSLContext | bool:
    """The CA to check HTTPS nodes against: RUMOR_CACERT, else the local cluster's, else the system's."""
    path = os.environ.get("RUMOR_CACERT") or (str(LOCAL_CA) if LOCAL_CA.exists() else None)
    if path is None:
        return True
    try:
        return ssl.create_default_context(cafile=path)  # this CA only
    except (OSError, ssl.SSLError) as exc:
        fail(ExitCode.USAGE, f"RUMOR_CACERT: cannot load a CA certificate from {path}: {exc}")


def make_client(url: str, api_key: str | None, timeout_s: float = TIMEOUT_S) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # trust_env=False: a proxy from the environment must never carry cluster traffic.
    return httpx.Client(
        base_url=split_urls([url])[0],
        headers=headers,
        timeout=timeout_s,
        trust_env=False,
        verify=tls_verify(),
    )


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        detail = body.get("detail")
        return f"{body['error']}: {detail}" if detail else str(body["error"])
    return json.dumps(body)[:500]


def send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request; transport, auth and server errors end the command with their code."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        fail(ExitCode.UNREACHABLE, f"cannot reach {client.base_url}: {exc or type(exc).__name__}")
    if response.status_code in (401, 403):
        hint = "" if client.headers.get("Authorization") else " (no API key: pass --api-key)"
        fail(ExitCode.AUTH, f"{response.status_code} {error_text(response)}{hint}")
    if response.status_code >= 500:
        fail(ExitCode.UNREACHABLE, f"{response.status_code} from server: {error_text(response)}")
    return response


def check(response: httpx.Response, what: str) -> httpx.Response:
    """Map the remaining 4xx answers to exit codes."""
    status = response.status_code
    if status < 400:
        return response
    if status == 404:
        fail(ExitCode.NOT_FOUND, f"{what}: not found")
    if status in (409, 412):
        fail(ExitCode.CONFLICT, f"{what}: {status} {error_text(response)}")
    fail(ExitCode.USAGE, f"{what}: {status} {error_text(response)}")


def kv_path(key: str) -> str:
    if not key:
        fail(ExitCode.USAGE, "a key must not be empty")
    return "/kv/" + quote(key, safe="")


def if_match_header(context: str | None) -> dict[str, str]:
    return {"If-Match": f'"{context.strip().strip(chr(34))}"'} if context else {}


# ---------------------------------------------------------------------------- data commands


def read_value(value: str | None) -> tuple[bytes, str]:
    """The value to write and its default content type; standard input is read bounded."""
    if value is None and sys.stdin.isatty():
        fail(ExitCode.USAGE, "give VALUE, pipe the value in, or pass - to type it")
    if value is None or value == "-":
        data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
        if len(data) > MAX_STDIN_BYTES:
            fail(ExitCode.USAGE, f"standard input holds more than {MAX_STDIN_BYTES} bytes")
        return data, "application/octet-stream"
    return value.encode(), "text/plain; charset=utf-8"


@app.command(rich_help_panel="Data", epilog=EXIT_CODES)
def put(
    key: Annotated[str, typer.Argument(help="The key (UTF-8).")],
    value: Annotated[
        str | None,
        typer.Argument(help="The value; '-' or nothing: read it from standard input."),
    ] = None,
    content_type: Annotated[
        str | None,
        typer.Option(
            "--content-type",
            "-t",
            show_default=False,
            help="Content-Type stored with the value (default: text/plain for an argument, "
            "application/octet-stream for standard input).",
        ),
    ] = None,
    if_match: Annotated[
        str | None,
        typer.Option(
            "--if-match",
            show_default=False,
            help="Write only if the node's version is the one this context names "
            "(the ETag from `rumor get --json`).",
        ),
    ] = None,
    create: Annotated[
        bool, typer.Option("--create", help="Fail (exit 5) if the key already has a value.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Store VALUE under KEY (upsert)."""
    body, default_type = read_value(value)
    headers = {"Content-Type": content_type or default_type, **if_match_header(if_match)}
    with make_client(url, resolve_api_key(api_key)) as client:
        method = "POST" if create else "PUT"
        response = check(send(client, method, kv_path(key), content=body, headers=headers), key)
    result = response.json()
    result["created"] = response.status_code == 201
    if json_output:
        emit_json(result)
        return
    verb = "created" if result["created"] else "updated"
    stdout.print(f"{verb} [bold]{key}[/] ({len(body)} bytes)  context {result.get('context')}")


@app.command(rich_help_panel="Data", epilog=EXIT_CODES)
def get(
    key: Annotated[str, typer.Argument(help="The key.")],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print the value of KEY (raw bytes; exit 1 if absent or deleted)."""
    with make_client(url, resolve_api_key(api_key)) as client:
        response = check(send(client, "GET", kv_path(key)), key)
    if json_output:
        emit_json(value_document(key, response))
        return
    sys.stdout.buffer.write(response.content)
    if sys.stdout.isatty() and not response.content.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def value_document(key: str, response: httpx.Response) -> dict[str, object]:
    try:
        value, encoding = response.content.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(response.content).decode(), "base64"
    return {
        "key": key,
        "value": value,
        "encoding": encoding,
        "content_type": response.headers.get("Content-Type"),
        "context": response.headers.get("X-Rumor-Context"),
    }


@app.command(rich_help_panel="Data", epilog=EXIT_CODES)
def delete(
    key: Annotated[str, typer.Argument(help="The key.")],
    if_match: Annotated[
        str | None,
        typer.Option("--if-match", show_default=False, help="Delete only this version."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete KEY (a tombstone that replicates like a write; exit 1 if absent)."""
    with make_client(url, resolve_api_key(api_key)) as client:
        response = check(
            send(client, "DELETE", kv_path(key), headers=if_match_header(if_match)), key
        )
    if json_output:
        emit_json(response.json())
        return
    stdout.print(f"deleted [bold]{key}[/]")


@app.command("list", rich_help_panel="Data", epilog=EXIT_CODES)
def list_keys(
    prefix: Annotated[str, typer.Option("--prefix", "-p", help="Only keys starting so.")] = "",
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1_000_000, help="At most this many keys.")
    ] = 100,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """List keys in order, following the server's pages."""
    keys, after = fetch_keys(url, resolve_api_key(api_key), prefix, limit)
    if json_output:
        emit_json({"keys": keys, "next": after})
        return
    for key in keys:
        sys.stdout.write(key + "\n")
    if after is not None:
        stderr.print(f"(more keys after {after!r}: raise --limit)")


def fetch_keys(
    url: str, api_key: str | None, prefix: str, limit: int
) -> tuple[list[str], str | None]:
    keys: list[str] = []
    after: str | None = None
    with make_client(url, api_key) as client:
        for _ in range(limit // LIST_PAGE_MAX + 2):  # bounded: one page more than needed
            params: dict[str, str | int] = {
                "prefix": prefix,
                "limit": min(LIST_PAGE_MAX, limit - len(keys)),
            }
            if after is not None:
                params["after"] = after
            page = check(send(client, "GET", "/kv", params=params), "list").json()
            keys.extend(page["keys"])
            after = page.get("next")
            if after is None or len(keys) >= limit:
                break
    return keys[:limit], after


# ---------------------------------------------------------------------------- the cluster


@dataclass(frozen=True, slots=True)
class Probe:
    """One node's answer to a fan-out request: a JSON body, a 404, or why there was none."""

    url: str
    status: int | None
    body: Any
    error: str | None


async def _probe_one(client: httpx.AsyncClient, url: str, path: str) -> Probe:
    try:
        response = await client.get(url.rstrip("/") + path)
    except httpx.TransportError as exc:
        return Probe(url, None, None, str(exc) or type(exc).__name__)
    try:
        body = response.json()
    except ValueError:
        body = None
    error = None if response.status_code < 400 else error_text(response)
    return Probe(url, response.status_code, body, error)


async def _probe_all(urls: list[str], path: str, api_key: str | None) -> list[Probe]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(
        headers=headers, timeout=PROBE_TIMEOUT_S, trust_env=False, verify=tls_verify()
    ) as client:
        return list(await asyncio.gather(*(_probe_one(client, url, path) for url in urls)))


def probe_all(urls: list[str], path: str, api_key: str | None) -> list[Probe]:
    """GET ``path`` on every node at once (bounded by ``MAX_NODES``)."""
    return asyncio.run(_probe_all(urls[:MAX_NODES], path, api_key))


def fetch_cluster(url: str, api_key: str | None) -> dict[str, Any]:
    with make_client(url, api_key) as client:
        document: dict[str, Any] = check(send(client, "GET", "/cluster"), "cluster").json()
    return document


def node_urls(urls: list[str] | None, api_key: str | None) -> dict[str, str]:
    """Node id -> URL: the members of one node's /cluster, or exactly the URLs given."""
    given = split_urls(urls)
    if len(given) == 1:
        cluster = fetch_cluster(given[0], api_key)
        found = {member["id"]: member["url"] for member in cluster["members"]}
        found[cluster["node_id"]] = given[0]  # the one we reached, at the address we used
        return found
    found = {}
    for probe in probe_all(given, "/health", api_key):
        if probe.status != 200 or not isinstance(probe.body, dict):
            fail(ExitCode.UNREACHABLE, f"cannot reach {probe.url}: {probe.error}")
        found[str(probe.body["node_id"])] = probe.url
    return found


# ---------------------------------------------------------------------------- status


@app.command(rich_help_panel="Cluster", epilog=EXIT_CODES)
def status(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """The cluster as one node sees it: members, state, heartbeat age, keys, ownership."""
    key = resolve_api_key(api_key)
    cluster = fetch_cluster(url, key)
    members = cluster["members"][:MAX_NODES]
    own = {member["id"]: member["url"] for member in members if member["id"] != cluster["node_id"]}
    counts = {cluster["node_id"]: cluster}
    for probe in probe_all(list(own.values()), "/cluster", key):
        if probe.status == 200 and isinstance(probe.body, dict):
            counts[probe.body.get("node_id", "")] = probe.body
    for member in members:
        seen = counts.get(member["id"])
        member["keys"] = seen.get("keys") if seen else None
        member["tombstones"] = seen.get("tombstones") if seen else None
    if json_output:
        emit_json(cluster)
        return
    print_status(cluster)


STATE_STYLE = {"alive": "green", "suspect": "yellow", "dead": "red", "left": "dim"}


def print_status(cluster: dict[str, Any]) -> None:
    sharding = "on, replicas " + str(cluster.get("replicas")) if cluster.get("sharding") else "off"
    stdout.print(
        f"as seen by [bold]{cluster['node_id']}[/] ({cluster['url']}), sharding {sharding}"
    )
    ownership = cluster.get("ownership") or {}
    table = Table(
        "node", "state", "incarnation", "heartbeat age", "keys", "owns",
        Column("address", overflow="fold"),
    )  # fmt: skip
    for member in sorted(cluster["members"], key=lambda m: str(m["id"])):
        style = STATE_STYLE.get(member["state"], "")
        age = member.get("last_heartbeat_age_s")
        share = ownership.get(member["id"])
        table.add_row(
            str(member["id"]) + (" *" if member["id"] == cluster["node_id"] else ""),
            f"[{style}]{member['state']}[/]" if style else str(member["state"]),
            str(member.get("incarnation", "")),
            "-" if age is None else f"{age:.1f} s",
            "?" if member.get("keys") is None else str(member["keys"]),
            "-" if share is None else f"{100 * share:.1f} %",
            str(member["url"]),
        )
    stdout.print(table)


# ---------------------------------------------------------------------------- why


@dataclass(frozen=True, slots=True)
class Version:
    """One node's version of a key, from ``GET /kv/{key}?meta=true``."""

    node: str
    url: str
    meta: dict[str, Any]

    @property
    def identity(self) -> tuple[object, ...]:
        meta = self.meta
        return (
            tuple(sorted(meta["clock"].items())),
            meta["hlc"],
            meta["origin"],
            meta["tombstone"],
            meta["value_sha256"],
        )

    def record(self) -> Record:
        # The merge rules never look at the bytes of versions with distinct (hlc, origin).
        meta = self.meta
        return Record(
            value=meta["value_sha256"].encode(),
            content_type=meta.get("content_type") or "",
            clock=dict(meta["clock"]),
            hlc=int(meta["hlc"]),
            origin=str(meta["origin"]),
            tombstone=bool(meta["tombstone"]),
        )


def label(meta: dict[str, Any]) -> str:
    kind = "tombstone" if meta.get("tombstone") else f"value sha256 {meta['value_sha256'][:12]}"
    clock = ",".join(f"{k}:{v}" for k, v in sorted(meta["clock"].items()))
    return f"{kind}, clock {{{clock}}}, hlc {meta['hlc']}, origin {meta['origin']}"


def pick_winner(versions: list[Version]) -> tuple[Version, list[dict[str, str]]]:
    """The version every node will converge to, and which rule beats each other version."""
    winner = versions[0]
    for version in versions[1:]:
        if decide(winner.record(), version.record()).applied:
            winner = version
    beaten = []
    for version in versions:
        if version.identity == winner.identity:
            continue
        outcome = decide(version.record(), winner.record())
        rule = "descendant" if outcome is Outcome.DESCENDANT else "lww"
        beaten.append({"node": version.node, "rule": rule, "version": label(version.meta)})
    return winner, beaten


def last_conflict(versions: list[Version]) -> dict[str, Any] | None:
    """The most recent concurrent version LWW threw away on any node, if any."""
    found = [(v.meta["discarded"], v.node) for v in versions if v.meta.get("discarded")]
    if not found:
        return None
    discarded, node = max(found, key=lambda item: (item[0]["hlc"], item[0]["origin"]))
    nodes = sorted({n for d, n in found if d == discarded})
    return {"rule": "lww", "discarded": discarded, "nodes": nodes or [node]}


def explain(
    versions: list[Version],
    winner: Version | None,
    beaten: list[dict[str, str]],
    conflict: dict[str, Any] | None,
) -> str:
    if winner is None:
        return "no reachable node holds this key"
    holders = sorted(v.node for v in versions if v.identity == winner.identity)
    if not beaten:
        lines = ["every node that holds the key holds the same version"]
    else:
        lines = [f"nodes disagree; all will converge to the version {', '.join(holders)} hold"]
        for item in beaten:
            why = (
                "it descends from theirs (vector clock)"
                if item["rule"] == "descendant"
                else "concurrent versions: the larger (HLC, origin) wins"
            )
            lines.append(f"  over {item['node']}'s {item['version']}: {why}")
    if conflict is None:
        lines.append(
            "no conflict resolved on any node: each version replaced one it descended "
            "from (descendant rule), nothing was discarded"
        )
    else:
        lines.append(
            "last conflict: concurrent versions, decided by LWW on (HLC, origin); discarded "
            f"{label(conflict['discarded'])} (recorded by {', '.join(conflict['nodes'])})"
        )
    return "\n".join(lines)


@app.command(rich_help_panel="Cluster", epilog=EXIT_CODES)
def why(
    key: Annotated[str, typer.Argument(help="The key.")],
    url: UrlsOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """KEY's version on every reachable node, whether they agree, and which rule decided."""
    secret = resolve_api_key(api_key)
    nodes = node_urls(url, secret)
    probes = probe_all(list(nodes.values()), kv_path(key) + "?meta=true", secret)
    rows, versions = why_rows(list(nodes), probes)
    distinct = {v.identity for v in versions}
    winner, beaten = pick_winner(versions) if versions else (None, [])
    agree = len(distinct) == 1 and not any(row["status"] == "absent" for row in rows)
    conflict = last_conflict(versions)
    explanation = explain(versions, winner, beaten, conflict)
    if json_output:
        emit_json(
            {
                "key": key,
                "agree": agree,
                "nodes": rows,
                "winner": None if winner is None else {"node": winner.node, **winner.meta},
                "beaten": beaten,
                "last_conflict": conflict,
                "explanation": explanation,
            }
        )
    else:
        print_why(key, rows, explanation)
    if winner is None:
        raise typer.Exit(int(ExitCode.NOT_FOUND))


def why_rows(names: list[str], probes: list[Probe]) -> tuple[list[dict[str, Any]], list[Version]]:
    """One row per node asked; ``meta.node`` says who answered (an owner, when sharded)."""
    rows: list[dict[str, Any]] = []
    versions: list[Version] = []
    for name, probe in zip(names, probes, strict=True):
        if probe.status in (401, 403):
            fail(ExitCode.AUTH, f"{probe.url}: {probe.status} {probe.error}")
        if probe.status == 200 and isinstance(probe.body, dict):
            versions.append(Version(name, probe.url, probe.body))
            rows.append({"node": name, "url": probe.url, "status": "ok", "meta": probe.body})
        elif probe.status == 404:
            rows.append({"node": name, "url": probe.url, "status": "absent", "meta": None})
        else:
            rows.append(
                {
                    "node": name,
                    "url": probe.url,
                    "status": "unreachable",
                    "error": probe.error,
                    "meta": None,
                }
            )
    return rows, versions


def print_why(key: str, rows: list[dict[str, Any]], explanation: str) -> None:
    table = Table("node", Column("version", overflow="fold"), title=f"why {key}")
    for row in sorted(rows, key=lambda r: str(r["node"])):
        if row["status"] == "ok":
            text = label(row["meta"])
        elif row["status"] == "absent":
            text = "[dim]never seen[/]"
        else:
            text = f"[red]unreachable[/] {row.get('error') or ''}"
        answered_by = (row["meta"] or {}).get("node")
        name = str(row["node"])
        if answered_by and answered_by != row["node"]:
            name += f" -> {answered_by}"  # sharded: the node forwarded to an owner
        table.add_row(name, text)
    stdout.print(table)
    stdout.print(explanation, markup=False)


# ---------------------------------------------------------------------------- chaos

chaos_app = typer.Typer(
    help="Inject faults through nodes started with --allow-faults (admin key): partition "
    "the cluster, heal it, add delay or loss. `rumor cluster up` enables faults.",
    no_args_is_help=True,
)
app.add_typer(chaos_app, name="chaos", rich_help_panel="Cluster")


def resolve_names(names: list[str], nodes: dict[str, str]) -> list[str]:
    unknown = [name for name in names if name not in nodes]
    if unknown:
        fail(
            ExitCode.USAGE,
            f"unknown node(s) {', '.join(unknown)}; known: {', '.join(sorted(nodes))}",
        )
    return names


def partition_groups(groups: list[str], nodes: dict[str, str]) -> list[list[str]]:
    """``A,B C`` -> [[A, B], [C], [everyone else]]; a node may be in one group only."""
    parsed = [resolve_names([n for n in group.split(",") if n], nodes) for group in groups]
    named = [name for group in parsed for name in group]
    if len(named) != len(set(named)):
        fail(ExitCode.USAGE, "a node can be in only one side of a partition")
    rest = sorted(set(nodes) - set(named))
    sides = [group for group in parsed if group] + ([rest] if rest else [])
    if len(sides) < 2:
        fail(ExitCode.USAGE, "a partition needs at least two sides (name a subset of the nodes)")
    return sides


def apply_faults(
    plan: dict[str, dict[str, Any] | None],
    nodes: dict[str, str],
    api_key: str | None,
    json_output: bool,
) -> None:
    """POST (or DELETE, for None) /faults on each node of ``plan``; report per node."""
    results: dict[str, Any] = {}
    failed = False
    for name, faults in plan.items():
        with make_client(nodes[name], api_key) as client:
            method, kwargs = ("DELETE", {}) if faults is None else ("POST", {"json": faults})
            response = send(client, method, "/faults", **kwargs)
        if response.status_code == 404:
            fail(ExitCode.USAGE, f"{name} does not accept faults: start it with --allow-faults")
        if response.status_code >= 400:
            failed = True
            results[name] = {"error": error_text(response)}
        else:
            results[name] = response.json() if response.content else {}
    if json_output:
        emit_json({"nodes": results})
    else:
        table = Table("node", Column("url", overflow="fold"), Column("faults now", overflow="fold"))
        for name, result in results.items():
            table.add_row(name, nodes[name], describe_faults(result))
        stdout.print(table)
    if failed:
        raise typer.Exit(int(ExitCode.USAGE))


def describe_faults(faults: dict[str, Any]) -> str:
    if "error" in faults:
        return f"error: {faults['error']}"
    parts = []
    to, frm = set(faults.get("block_to") or []), set(faults.get("block_from") or [])
    if to & frm:
        parts.append("cut off from " + ",".join(sorted(to & frm)))
    if to - frm:
        parts.append("cannot send to " + ",".join(sorted(to - frm)))
    if frm - to:
        parts.append("cannot hear " + ",".join(sorted(frm - to)))
    if faults.get("delay_ms"):
        parts.append(f"delay {faults['delay_ms']} ms")
    if faults.get("loss"):
        parts.append(f"loss {100 * faults['loss']:g} %")
    if faults.get("pause_gossip"):
        parts.append("gossip paused")
    return "; ".join(parts) or "none (healthy)"


@chaos_app.command(epilog=EXIT_CODES)
def partition(
    groups: Annotated[
        list[str],
        typer.Argument(
            help="Sides as comma-separated node ids, e.g. n1,n2 n3; nodes not "
            "named form one more side."
        ),
    ],
    url: UrlsOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Cut the cluster into sides that cannot talk to each other (until `heal`)."""
    secret = resolve_api_key(api_key)
    nodes = node_urls(url, secret)
    sides = partition_groups(groups, nodes)
    plan: dict[str, dict[str, Any] | None] = {}
    for side in sides:
        others = sorted(set(nodes) - set(side))
        for name in side:
            plan[name] = {"block": others}
    apply_faults(plan, nodes, secret, json_output)


@chaos_app.command(epilog=EXIT_CODES)
def heal(
    url: UrlsOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Remove every fault from every node."""
    secret = resolve_api_key(api_key)
    nodes = node_urls(url, secret)
    apply_faults(dict.fromkeys(sorted(nodes)), nodes, secret, json_output)


@chaos_app.command(epilog=EXIT_CODES)
def delay(
    node: Annotated[str, typer.Argument(help="Node id.")],
    ms: Annotated[int, typer.Argument(min=0, max=600_000, help="Delay in milliseconds.")],
    url: UrlsOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delay every message NODE sends by MS milliseconds."""
    fault_one_node(node, {"delay_ms": ms}, url, api_key, json_output)


@chaos_app.command(epilog=EXIT_CODES)
def loss(
    node: Annotated[str, typer.Argument(help="Node id.")],
    pct: Annotated[float, typer.Argument(min=0, max=100, help="Percent of messages dropped.")],
    url: UrlsOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Drop PCT percent of the messages NODE sends."""
    fault_one_node(node, {"loss": pct / 100}, url, api_key, json_output)


def fault_one_node(
    node: str, fault: dict[str, Any], url: list[str] | None, api_key: str | None, json_output: bool
) -> None:
    """Apply ``fault`` to ``node`` alone (the node is named by id, found through /cluster)."""
    secret = resolve_api_key(api_key)
    nodes = node_urls(url, secret)
    resolve_names([node], nodes)
    apply_faults({node: fault}, nodes, secret, json_output)
