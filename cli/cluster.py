"""``rumor cluster up / down / add``: a real multi-node cluster on loopback in one command.

The nodes are ordinary ``rumor node`` processes on 127.0.0.1 (ports base, base+1, ...),
each in its own session so a Ctrl-C in the terminal reaches only ``cluster up``, which
then stops them in order (SIGTERM, so each flushes its storage). They find each other by
UDP broadcast on the discovery port from ``DIR/credentials``: no peer list, exactly as on
a real network. Secrets reach the nodes through the environment, never the command line.

``DIR/cluster.json`` records each node's pid together with its process start time, so
``cluster down`` signals only processes that are still the nodes it started: a pid
reused by an unrelated program after a reboot is left alone.

``up --tls``: ``live.certs`` writes a local CA (``DIR/ca.pem``) and a certificate per node
into DIR; the nodes serve HTTPS only and this tool trusts that CA to watch them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import psutil
from rich.table import Column, Table

from rumordb.cli import credentials
from rumordb.cli.connect import dir_option, json_option
from rumordb.cli.credentials import Credentials
from rumordb.cli.members import forget
from rumordb.cli.output import ExitCode, console, emit_json, fail

STATE_FILE = "cluster.json"
LOCK_FILE = "cluster.lock"
MAX_NODES = 64
WAIT_POLL_S = 0.25
STOP_TIMEOUT_S = 15.0
PORT_SCAN = 100  # ports tried above the highest one in use when adding a node

stdout = console()
stderr = console(to_stderr=True)


@click.group(no_args_is_help=True)
def cluster() -> None:
    """Run a local cluster of real nodes on 127.0.0.1 (development and experiments).

    `rumor cluster forget NODE` works on any cluster (--url): it forgets a dead member.
    """


cluster.add_command(forget)


wait_option = click.option(
    "--wait-s",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="How long to wait for the nodes to join.",
)


@dataclass(frozen=True, slots=True)
class NodeProcess:
    id: str
    url: str
    port: int
    pid: int
    create_time: float
    data_dir: str
    log: str


@dataclass(frozen=True, slots=True)
class ClusterState:
    sharding: bool
    replicas: int
    discovery_port: int
    nodes: list[NodeProcess]
    tls: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        raw = json.loads(text)
        nodes = [NodeProcess(**node) for node in raw["nodes"]]
        return cls(
            raw["sharding"], raw["replicas"], raw["discovery_port"], nodes, raw.get("tls", False)
        )


# ---------------------------------------------------------------------------- state file


@contextlib.contextmanager
def locked(cluster_dir: Path) -> Iterator[None]:
    """Serialize ``up``, ``add`` and ``down`` on one directory."""
    cluster_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(cluster_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_state(cluster_dir: Path) -> ClusterState | None:
    path = cluster_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        return ClusterState.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(ExitCode.USAGE, f"{path} is damaged ({exc}); stop its nodes by hand and delete it")


def write_state(cluster_dir: Path, state: ClusterState) -> None:
    path = cluster_dir / STATE_FILE
    partial = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    partial.write_text(state.to_json(), encoding="utf-8")
    os.replace(partial, path)


def remove_state(cluster_dir: Path) -> None:
    (cluster_dir / STATE_FILE).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- processes


def same_process(node: NodeProcess) -> bool:
    """True if ``node.pid`` still names the process started then (pids get reused)."""
    try:
        return bool(abs(psutil.Process(node.pid).create_time() - node.create_time) <= 0.01)
    except psutil.NoSuchProcess:
        return False


def is_our_node(node: NodeProcess) -> bool:
    """True while ``node.pid`` is still the running node process this tool started."""
    try:
        process = psutil.Process(node.pid)
        if process.status() == psutil.STATUS_ZOMBIE or not same_process(node):
            return False
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "node" in cmdline and node.id in cmdline and node.data_dir in cmdline


def rumor_command() -> list[str]:
    """How to run ``rumor``: the script beside this interpreter, else one on PATH."""
    beside = Path(sys.executable).with_name("rumor")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("rumor")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from rumordb.cli.main import app; sys.exit(app())"]


def node_argv(node_id: str, port: int, data_dir: Path, state: ClusterState) -> list[str]:
    argv = [
        *rumor_command(),
        "node",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--node-id", node_id,
        "--data-dir", str(data_dir),
        "--discovery-port", str(state.discovery_port),
        "--broadcast", "auto",
        "--allow-faults",
        "--replicas", str(state.replicas),
    ]  # fmt: skip
    if state.sharding:
        argv.append("--sharding")
    return argv


def spawn_node(
    node_id: str,
    port: int,
    cluster_dir: Path,
    secrets: Credentials,
    state: ClusterState,
    settings_env: dict[str, str] | None = None,
) -> NodeProcess:
    """Start one node; ``settings_env``: more ``RUMOR_*`` settings (``rumor sim compare``)."""
    data_dir = (cluster_dir / node_id).resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = cluster_dir.resolve() / f"{node_id}.log"
    argv = node_argv(node_id, port, data_dir, state)
    if state.tls:
        from rumordb.live import certs  # cryptography costs every other command 50 ms

        argv += certs.ensure_node_files(cluster_dir.resolve(), node_id).node_args()
    env = {**os.environ, **secrets.node_env(), **(settings_env or {})}
    env.pop("RUMOR_URL", None)
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # posix_spawn, not Popen: a detached node outlives us, and we keep only its pid.
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        started = 0.0  # died at once; `wait_until_joined` reports its log
    url = f"{'https' if state.tls else 'http'}://127.0.0.1:{port}"
    return NodeProcess(node_id, url, port, pid, started, str(data_dir), str(log))


def reap(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:  # not our child: ask the kernel
        try:
            return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True


def stop_nodes(nodes: list[NodeProcess]) -> dict[str, str]:
    """SIGTERM every node that is still ours, wait, SIGKILL stragglers. Outcome per node."""
    outcome: dict[str, str] = {}
    ours = []
    for node in nodes:
        if is_our_node(node):
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGTERM)
            ours.append(node)
        else:
            if same_process(node):
                reap(node.pid)  # a node that died as our child: collect its exit status
            outcome[node.id] = "not running"
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for node in ours:
        while not reap(node.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if reap(node.pid):
            outcome[node.id] = "stopped"
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGKILL)
            outcome[node.id] = "killed (did not stop in time)"
            time.sleep(0.1)
            reap(node.pid)
    return outcome


def node_dirs(cluster_dir: Path) -> list[str]:
    """The ids of the nodes whose data ``cluster_dir`` holds (``n1``, ``n2``, ...)."""
    if not cluster_dir.is_dir():
        return []
    found = [
        entry.name
        for entry in cluster_dir.iterdir()
        if entry.is_dir() and entry.name[:1] == "n" and entry.name[1:].isdigit()
    ]
    return sorted(found, key=lambda name: int(name[1:]))


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------- readiness


def log_tail(node: NodeProcess, lines: int = 15) -> str:
    try:
        text = Path(node.log).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def alive_members(client: httpx.Client, node: NodeProcess) -> set[str] | None:
    try:
        response = client.get(node.url + "/cluster")
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    document = response.json()
    members = {m["id"] for m in document["members"] if m["state"] == "alive"}
    return members | {document["node_id"]}


def trusted(cluster_dir: Path) -> ssl.SSLContext | bool:
    """How to check the nodes' certificates: the CA of a ``--tls`` cluster, else the default."""
    from rumordb.live import certs
    from rumordb.live.tls import client_context

    ca = certs.cacert_path(cluster_dir)
    return True if ca is None else client_context(ca)


def wait_until_joined(
    nodes: list[NodeProcess], reader_key: str, wait_s: float, verify: ssl.SSLContext | bool = True
) -> None:
    """Return when every node sees every other alive; fail with the culprit's log if not."""
    want = {node.id for node in nodes}
    deadline = time.monotonic() + wait_s
    headers = {"Authorization": f"Bearer {reader_key}"}
    missing: dict[str, set[str] | None] = {}
    with httpx.Client(headers=headers, timeout=2.0, trust_env=False, verify=verify) as client:
        while time.monotonic() < deadline:
            for node in nodes:
                if reap(node.pid):
                    raise NodeFailed(node, "exited during start-up")
            seen = {node.id: alive_members(client, node) for node in nodes}
            missing = {n: None if s is None else want - s for n, s in seen.items()}
            if not any(value is None or value for value in missing.values()):
                return
            time.sleep(WAIT_POLL_S)
    lagging = next(n for n in nodes if missing.get(n.id) is None or missing.get(n.id))
    seen_text = missing.get(lagging.id)
    problem = "does not answer" if seen_text is None else f"does not see {sorted(seen_text)}"
    raise NodeFailed(lagging, f"{problem} after {wait_s:.0f} s")


class NodeFailed(Exception):
    def __init__(self, node: NodeProcess, problem: str) -> None:
        super().__init__(f"{node.id} {problem}")
        self.node = node


def member_states(
    nodes: list[NodeProcess], reader_key: str, verify: ssl.SSLContext | bool = True
) -> dict[str, str]:
    """Each node's state as the first answering node sees it."""
    headers = {"Authorization": f"Bearer {reader_key}"}
    with httpx.Client(headers=headers, timeout=2.0, trust_env=False, verify=verify) as client:
        for node in nodes:
            try:
                response = client.get(node.url + "/cluster")
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                document = response.json()
                states = {m["id"]: m["state"] for m in document["members"]}
                states.setdefault(document["node_id"], "alive")
                return states
    return {}


# ---------------------------------------------------------------------------- output


def print_cluster(cluster_dir: Path, state: ClusterState, secrets: Credentials) -> None:
    states = member_states(state.nodes, secrets.reader_key, trusted(cluster_dir))
    table = Table("node", "URL", "state", "pid", Column("log", overflow="fold"))
    for node in state.nodes:
        table.add_row(node.id, node.url, states.get(node.id, "?"), str(node.pid), node.log)
    stdout.print(table)
    mode = f"sharding on, replicas {state.replicas}" if state.sharding else "full replication"
    path = credentials.credentials_path(cluster_dir)
    stdout.print(f"{mode}; discovery on UDP {state.discovery_port}; credentials in {path}")
    if state.tls:
        stdout.print(f"HTTPS only; clients trust the CA in {cluster_dir / 'ca.pem'}")
    stdout.print(f"admin key:  {secrets.admin_key}")
    stdout.print(f"reader key: {secrets.reader_key}")
    where = "" if cluster_dir == credentials.DEFAULT_DIR else f" --dir {cluster_dir}"
    stdout.print(
        f"try: rumor put hello world --url {state.nodes[0].url}{where} && "
        f"rumor get hello --url {state.nodes[-1].url}{where}",
        markup=False,
    )


def cluster_document(
    cluster_dir: Path, state: ClusterState, secrets: Credentials
) -> dict[str, Any]:
    return {
        "dir": str(cluster_dir.resolve()),
        "credentials": str(credentials.credentials_path(cluster_dir).resolve()),
        "admin_key": secrets.admin_key,
        "reader_key": secrets.reader_key,
        **({"cacert": str((cluster_dir / "ca.pem").resolve())} if state.tls else {}),
        **asdict(state),
    }


def report_failure(error: NodeFailed) -> None:
    stderr.print(f"[bold red]error:[/] {error}; last lines of {error.node.log}:")
    stderr.print(log_tail(error.node), markup=False, highlight=False)


# ---------------------------------------------------------------------------- commands


def load_secrets(cluster_dir: Path) -> tuple[Credentials, bool]:
    try:
        return credentials.load_or_create(cluster_dir)
    except credentials.CredentialsError as exc:
        fail(ExitCode.AUTH, str(exc))


def running_nodes(cluster_dir: Path) -> tuple[ClusterState | None, list[NodeProcess]]:
    state = read_state(cluster_dir)
    if state is None:
        return None, []
    return state, [node for node in state.nodes if is_our_node(node)]


class _Stop(Exception):
    """Ctrl-C or SIGTERM, raised where it is safe to stop the nodes in order."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


@contextlib.contextmanager
def signals(handler: Callable[[int, Any], None] | signal.Handlers) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``handler`` inside the block."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def shut_down(cluster_dir: Path, nodes: list[NodeProcess]) -> dict[str, str]:
    """Stop ``nodes`` and forget them; a second Ctrl-C must not orphan half of them."""
    with signals(signal.SIG_IGN):
        outcome = stop_nodes(nodes)
        remove_state(cluster_dir)
    return outcome


def start_all(
    cluster_dir: Path, secrets: Credentials, state: ClusterState, ports: list[int], wait_s: float
) -> ClusterState:
    """Spawn the nodes, record them at once (so `down` can stop them), wait for membership."""
    try:
        with signals(_raise_stop):
            for index, port in enumerate(ports, start=1):
                state.nodes.append(spawn_node(f"n{index}", port, cluster_dir, secrets, state))
            write_state(cluster_dir, state)
            wait_until_joined(state.nodes, secrets.reader_key, wait_s, trusted(cluster_dir))
    except NodeFailed as error:
        report_failure(error)
        shut_down(cluster_dir, state.nodes)
        raise click.exceptions.Exit(int(ExitCode.UNREACHABLE)) from None
    except _Stop:
        stderr.print("interrupted during start-up; stopping the nodes")
        shut_down(cluster_dir, state.nodes)
        raise click.exceptions.Exit(130) from None
    return state


@cluster.command()
@click.option("--nodes", "-n", type=click.IntRange(1, MAX_NODES), default=3, show_default=True,
              help="Nodes (more if DIR holds data of more: every node `add` made restarts).")  # fmt: skip
@click.option("--sharding", is_flag=True, help="Each key lives on --replicas owners only.")
@click.option("--replicas", type=click.IntRange(min=1), default=3, show_default=True,
              help="Owners per key when sharded.")  # fmt: skip
@click.option("--base-port", type=click.IntRange(1, 65535), default=8001, show_default=True,
              help="HTTP port of n1; n2 gets +1...")  # fmt: skip
@dir_option
@click.option("--detach", "-d", is_flag=True, help="Return once the cluster is up.")
@wait_option
@json_option
@click.option("--tls", is_flag=True, help="HTTPS only: a local CA and node certificates in DIR.")
def up(
    nodes: int,
    sharding: bool,
    replicas: int,
    base_port: int,
    cluster_dir: Path,
    detach: bool,
    wait_s: float,
    json_output: bool,
    tls: bool,
) -> None:
    """Start NODES nodes on 127.0.0.1 that find each other; Ctrl-C stops them all."""
    nodes = max([nodes, *(int(name[1:]) for name in node_dirs(cluster_dir))])
    ports = list(range(base_port, base_port + nodes))
    if ports[-1] > 65535:
        fail(ExitCode.USAGE, "--base-port + --nodes goes past port 65535")
    with locked(cluster_dir):
        _, alive = running_nodes(cluster_dir)
        if alive:
            fail(
                ExitCode.USAGE,
                f"a cluster is already running from {cluster_dir} "
                f"({', '.join(n.id for n in alive)}); stop it: rumor cluster down --dir {cluster_dir}",
            )
        taken = [port for port in ports if not port_free(port)]
        if taken:
            fail(ExitCode.USAGE, f"port(s) {taken} on 127.0.0.1 are in use; pick --base-port")
        secrets, _ = load_secrets(cluster_dir)
        state = ClusterState(sharding, replicas, secrets.discovery_port, [], tls)
        state = start_all(cluster_dir, secrets, state, ports, wait_s)
    if json_output:
        emit_json(cluster_document(cluster_dir, state, secrets))
    else:
        print_cluster(cluster_dir, state, secrets)
    if detach:
        if not json_output:
            stdout.print(f"stop it with: rumor cluster down --dir {cluster_dir}")
        return
    stay_in_foreground(cluster_dir, state)


def stay_in_foreground(cluster_dir: Path, state: ClusterState) -> None:
    """Watch the nodes until Ctrl-C / SIGTERM, then stop every node of the cluster."""
    stdout.print("running; Ctrl-C stops every node")
    reported: set[str] = set()
    try:
        with signals(_raise_stop):
            while True:
                for node in state.nodes:
                    if node.id not in reported and reap(node.pid):
                        reported.add(node.id)
                        stderr.print(f"{node.id} (pid {node.pid}) exited; see {node.log}")
                time.sleep(0.5)
    except _Stop:
        pass
    with locked(cluster_dir):
        latest = read_state(cluster_dir) or state  # includes nodes from `cluster add`
        outcome = shut_down(cluster_dir, latest.nodes)
    stdout.print(", ".join(f"{name} {what}" for name, what in outcome.items()))


@cluster.command()
@dir_option
@json_option
def down(cluster_dir: Path, json_output: bool) -> None:
    """Stop the nodes a detached `rumor cluster up` started (data and keys are kept)."""
    with locked(cluster_dir):
        state = read_state(cluster_dir)
        if state is None:
            fail(ExitCode.NOT_FOUND, f"no cluster is running from {cluster_dir}")
        outcome = stop_nodes(state.nodes)
        remove_state(cluster_dir)
    if json_output:
        emit_json({"dir": str(cluster_dir.resolve()), "nodes": outcome})
        return
    for name, what in outcome.items():
        stdout.print(f"{name}: {what}")


def next_free_port(state: ClusterState) -> int:
    start = max(node.port for node in state.nodes) + 1
    for port in range(start, min(start + PORT_SCAN, 65536)):
        if port_free(port):
            return port
    fail(ExitCode.USAGE, f"no free port in {start}..{start + PORT_SCAN - 1}")


@cluster.command()
@dir_option
@wait_option
@json_option
def add(cluster_dir: Path, wait_s: float, json_output: bool) -> None:
    """Add one more node to the running cluster in DIR (it joins by discovery)."""
    with locked(cluster_dir):
        state, alive = running_nodes(cluster_dir)
        if state is None or not alive:
            fail(ExitCode.NOT_FOUND, f"no cluster is running from {cluster_dir}")
        if len(state.nodes) >= MAX_NODES:
            fail(ExitCode.USAGE, f"a local cluster has at most {MAX_NODES} nodes")
        secrets, _ = load_secrets(cluster_dir)
        number = 1 + max(int(node.id.lstrip("n")) for node in state.nodes)
        node = spawn_node(f"n{number}", next_free_port(state), cluster_dir, secrets, state)
        state.nodes.append(node)
        write_state(cluster_dir, state)
        try:
            wait_until_joined([*alive, node], secrets.reader_key, wait_s, trusted(cluster_dir))
        except NodeFailed as error:
            report_failure(error)
            stop_nodes([node])
            state.nodes.remove(node)
            write_state(cluster_dir, state)
            raise click.exceptions.Exit(int(ExitCode.UNREACHABLE)) from None
    if json_output:
        emit_json(cluster_document(cluster_dir, state, secrets))
    else:
        print_cluster(cluster_dir, state, secrets)


def find_node(state: ClusterState | None, cluster_dir: Path, node_id: str) -> NodeProcess:
    if state is None:
        fail(ExitCode.NOT_FOUND, f"no cluster is running from {cluster_dir}")
    for node in state.nodes:
        if node.id == node_id:
            return node
    known = ", ".join(node.id for node in state.nodes)
    fail(ExitCode.USAGE, f"no node {node_id!r} in {cluster_dir} (nodes: {known})")


@cluster.command()
@click.argument("node_id", metavar="NODE")
@dir_option
def kill(node_id: str, cluster_dir: Path) -> None:
    """Crash one NODE (e.g. n2; SIGKILL: no flush, no goodbye), to watch the others cope."""
    with locked(cluster_dir):
        node = find_node(read_state(cluster_dir), cluster_dir, node_id)
        if not is_our_node(node):
            fail(ExitCode.NOT_FOUND, f"{node_id} is not running")
        os.kill(node.pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not reap(node.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    stdout.print(
        f"{node_id} killed (pid {node.pid}); bring it back: rumor cluster restart {node_id}"
    )


@cluster.command()
@click.argument("node_id", metavar="NODE")
@dir_option
@wait_option
def restart(node_id: str, cluster_dir: Path, wait_s: float) -> None:
    """Start a stopped or killed NODE again: same id, port and data (it rejoins, catches up)."""
    with locked(cluster_dir):
        state = read_state(cluster_dir)
        old = find_node(state, cluster_dir, node_id)
        assert state is not None
        if is_our_node(old):
            fail(ExitCode.USAGE, f"{node_id} is running (pid {old.pid}); kill it first")
        secrets, _ = load_secrets(cluster_dir)
        node = spawn_node(node_id, old.port, cluster_dir, secrets, state)
        state.nodes[state.nodes.index(old)] = node
        write_state(cluster_dir, state)
        others = [n for n in state.nodes if n.id != node_id and is_our_node(n)]
        try:
            wait_until_joined([*others, node], secrets.reader_key, wait_s, trusted(cluster_dir))
        except NodeFailed as error:
            report_failure(error)
            raise click.exceptions.Exit(int(ExitCode.UNREACHABLE)) from None
    stdout.print(f"{node_id} restarted (pid {node.pid}) at {node.url}")
