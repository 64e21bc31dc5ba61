"""A small lab of network namespaces: one namespace per host, wired to a private switch.

Why namespaces: the multi-host ring needs real separate network stacks (real broadcast,
real packet loss, partitions that the nodes cannot see coming) without leaving the
machine. Layout of one lab (every name carries a per-run tag, so concurrent runs and
stale leftovers never collide):

    <tag>-sw    the "switch": a bridge ``br0`` with one veth port per host (``p<i>``);
                no address, no route; the nftables table that injects faults lives here
    <tag>-ctl   the control host (clients, checkers), 10.77.0.2
    <tag>-h<i>  one host per node, 10.77.0.(10 + i)

Nothing is created in the root namespace: veth pairs are created directly between the
host and switch namespaces, and no namespace has a default route, so no packet can leave.
Faults are packet drops in the switch's bridge forward hook: both directions
(partition), one direction (cut), or a random share (loss, via ``numgen random``).

Cleanup: ``Lab.close`` kills the lab's processes (by PID), deletes its namespaces (the
switch's deletion removes the bridge and every veth) and verifies ``ip netns list``. It is
called by the pytest fixture's finalizer, at exit, on SIGTERM / SIGHUP, and a new lab first
sweeps leftovers of labs whose creating process is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

SUBNET = "10.77.0"
BROADCAST = f"{SUBNET}.255"
PREFIX = "rmh"  # rumor multi-host
CONTROL_ADDRESS = f"{SUBNET}.2"
PYTHON = sys.executable
COMMAND_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
MAX_HOSTS = 200
ROOT = Path(__file__).resolve().parents[2]  # the repository: ``-m tests.multihost...`` works


class LabError(RuntimeError):
    pass


def run(argv: Sequence[str], check: bool = True, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    """Run a setup command; raise with its stderr when it fails."""
    return complete(argv, check, timeout_s).stdout


def complete(
    argv: Sequence[str], check: bool = True, timeout_s: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, check=False, cwd=ROOT
    )
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why this machine cannot host a lab, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "multi-host tests need root (network namespaces); CI runs as root"
    if shutil.which("ip") is None:
        return "multi-host tests need `ip` (iproute2)"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    try:
        run(["ip", "netns", "add", probe])
    except (LabError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is unavailable here: {exc}"
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


def ensure_nftables() -> None:
    """The fault injector needs nft; install it with apt when missing (CI is root)."""
    if shutil.which("nft") is not None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "nftables"]):
        subprocess.run(argv, check=False, capture_output=True, timeout=300, env=env)
    if shutil.which("nft") is None:
        raise LabError("nftables is missing and `apt-get install -y nftables` did not install it")


def our_namespaces() -> list[str]:
    names = [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line]
    return [name for name in names if name.startswith(f"{PREFIX}-")]


def sweep_stale() -> list[str]:
    """Delete namespaces of labs whose creating process no longer exists."""
    removed = []
    for name in our_namespaces():
        parts = name.split("-")
        if len(parts) < 3 or not parts[1].isdigit() or _alive(int(parts[1])):
            continue
        for pid in _pids_in(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pids_in(namespace: str) -> list[int]:
    out = run(["ip", "netns", "pids", namespace], check=False)
    return [int(word) for word in out.split() if word.isdigit()]


@dataclass(slots=True)
class Host:
    name: str  # short name inside the lab: "ctl", "h1", ...
    namespace: str
    address: str
    port: str  # its port on the switch's bridge

    def url(self, port: int) -> str:
        return f"http://{self.address}:{port}"


@dataclass(slots=True, eq=False)
class Lab:
    """One isolated network of hosts. Use as a context manager, or call ``close``."""

    tag: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}")
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    closed: bool = False

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    def up(self, host_count: int) -> Lab:
        if not 0 <= host_count <= MAX_HOSTS:
            raise ValueError(f"a lab holds 0..{MAX_HOSTS} hosts")
        _register(self)
        sweep_stale()
        run(["ip", "netns", "add", self.switch])
        self.sw("ip", "link", "add", "br0", "type", "bridge")
        self.sw("ip", "link", "set", "br0", "up")
        self._nft_table()
        self.add_host("ctl", CONTROL_ADDRESS)
        for i in range(1, host_count + 1):
            self.add_host(f"h{i}")
        return self

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- topology ---------------------------------------------------------------------
    def add_host(self, name: str, address: str | None = None) -> Host:
        index = len(self.hosts)
        address = address or f"{SUBNET}.{10 + index}"
        host = Host(name, f"{self.tag}-{name}", address, f"p{index}")
        run(["ip", "netns", "add", host.namespace])
        self.hosts[name] = host
        veth = ["eth0", "type", "veth", "peer", "name", host.port, "netns", self.switch]
        run(["ip", "-n", host.namespace, "link", "add", *veth])
        self.sw("ip", "link", "set", host.port, "master", "br0")
        self.sw("ip", "link", "set", host.port, "up")
        ns = ["ip", "-n", host.namespace]
        run([*ns, "addr", "add", f"{address}/24", "broadcast", BROADCAST, "dev", "eth0"])
        run([*ns, "link", "set", "eth0", "up"])
        run([*ns, "link", "set", "lo", "up"])
        return host

    def node_hosts(self) -> list[Host]:
        return [host for name, host in self.hosts.items() if name != "ctl"]

    def sw(self, *argv: str) -> str:
        return run(["ip", "netns", "exec", self.switch, *argv])

    def default_routes(self) -> dict[str, str]:
        """Every namespace's default route (all must be empty)."""
        namespaces = [self.switch, *(h.namespace for h in self.hosts.values())]
        return {ns: run(["ip", "-n", ns, "route", "show", "default"]).strip() for ns in namespaces}

    # --- processes --------------------------------------------------------------------
    def spawn(
        self,
        host: str,
        argv: Sequence[str],
        log: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``host``'s namespace; ``ip netns exec`` execs it, so the
        PID we get is the program's own (signals reach it directly)."""
        out = log.open("ab") if log is not None else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.hosts[host].namespace, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd or ROOT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        finally:
            if log is not None and not isinstance(out, int):
                out.close()
        self.processes.append(proc)
        return proc

    def exec(
        self, host: str, argv: Sequence[str], timeout_s: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``host`` (from the repository root) and wait for it."""
        return complete(
            ["ip", "netns", "exec", self.hosts[host].namespace, *argv], check, timeout_s
        )

    def client(
        self, *args: str, host: str = "ctl", timeout_s: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``python -m tests.multihost.client ARGS`` inside ``host``."""
        return self.exec(host, [PYTHON, "-m", "tests.multihost.client", *args], timeout_s, check)

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        """Stop one lab process (continued first, in case it is paused); its exit code."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, sig)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)
        return proc.returncode

    @staticmethod
    def signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        os.kill(proc.pid, sig)

    # --- faults (nftables in the switch) ----------------------------------------------
    def _nft_table(self) -> None:
        ensure_nftables()
        self.sw("nft", "add", "table", "bridge", "faults")
        chain = "{ type filter hook forward priority 0; policy accept; }"
        self.sw("nft", "add", "chain", "bridge", "faults", "forward", chain)

    def _drop(self, *match: str) -> None:
        # Only IPv4 frames: ARP keeps working, so a one-way cut stays one-way (else the
        # lost ARP replies would cut the other direction too).
        rule = ["add", "rule", "bridge", "faults", "forward", "ether", "type", "ip"]
        self.sw("nft", *rule, *match, "drop")

    def cut(self, src: str, dst: str) -> None:
        """One-way: frames from ``src`` to ``dst`` vanish."""
        self._drop("iifname", self.hosts[src].port, "oifname", self.hosts[dst].port)

    def partition(self, *groups: Iterable[str]) -> None:
        """Hosts in different groups cannot reach each other (the control host can)."""
        sides = [list(group) for group in groups]
        for i, side in enumerate(sides):
            for other in sides[i + 1 :]:
                for a in side:
                    for b in other:
                        self.cut(a, b)
                        self.cut(b, a)

    def isolate(self, host: str) -> None:
        others = [h.name for h in self.node_hosts() if h.name != host]
        self.partition([host], others)

    def loss(self, host: str, percent: int, towards: Iterable[str] | None = None) -> None:
        """Drop ``percent``% of the frames ``host`` sends (to ``towards`` only, if given)
        and of those it receives (from anyone, if ``towards`` is None)."""
        if not 0 < percent < 100:
            raise ValueError("loss is a percentage in 1..99")
        port = self.hosts[host].port
        share = ["numgen", "random", "mod", "100", "<", str(percent)]
        if towards is None:
            for direction in ("iifname", "oifname"):
                self._drop(direction, port, *share)
            return
        ports = ", ".join(f'"{self.hosts[h].port}"' for h in towards)
        self._drop("iifname", port, "oifname", "{", ports, "}", *share)

    def delay(self, host: str, delay_ms: int) -> None:
        """Route the control host's packets to ``host`` over a wire that holds each one
        for ``delay_ms`` (``tests.multihost.tun_wire``: two TUN devices and a relay, since
        many kernels have no ``sch_netem``); replies come back at once, so a round trip
        between them costs ``delay_ms``. Traffic between node hosts is not delayed. The
        wire is a lab process: it goes with the lab (its devices and routes with it)."""
        ctl, far = self.hosts["ctl"], self.hosts[host]
        wire = f"dly{len(self.processes)}"
        argv = [PYTHON, "-m", "tests.multihost.tun_wire", "--far-netns", far.namespace,
                "--device", wire, "--delay-ms", str(delay_ms)]  # fmt: skip
        proc = self.spawn("ctl", argv)

        def both_up() -> bool:
            if proc.poll() is not None:
                raise LabError(f"the delay wire exited with {proc.returncode}")
            return all(
                complete(["ip", "-n", ns, "link", "show", wire], check=False).returncode == 0
                for ns in (ctl.namespace, far.namespace)
            )

        if not wait_for(both_up, COMMAND_TIMEOUT_S):
            raise LabError("the delay wire's devices did not appear")
        for near, other in ((ctl, far), (far, ctl)):
            ns = ["ip", "-n", near.namespace]
            run([*ns, "link", "set", wire, "up"])
            run([*ns, "route", "add", f"{other.address}/32", "dev", wire, "src", near.address])

    def heal(self) -> None:
        self.sw("nft", "flush", "chain", "bridge", "faults", "forward")

    def rules(self) -> str:
        return self.sw("nft", "list", "chain", "bridge", "faults", "forward")

    # --- cleanup ----------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        return [self.switch, *(h.namespace for h in self.hosts.values())]

    def close(self) -> None:
        """Kill every process, delete every namespace, and verify nothing is left."""
        if self.closed:
            return
        self.closed = True
        for proc in self.processes:
            with contextlib.suppress(Exception):
                self.stop(proc, signal.SIGKILL)
        mine = [ns for ns in our_namespaces() if ns.startswith(f"{self.tag}-")]
        for ns in mine:
            for pid in _pids_in(ns):  # strays started by a lab process
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            run(["ip", "netns", "del", ns], check=False)
        _LABS.discard(self)
        left = [ns for ns in our_namespaces() if ns.startswith(f"{self.tag}-")]
        if left:
            raise LabError(f"namespaces left behind: {left}")


# --- last-resort cleanup: at exit and on termination signals ------------------------------
_LABS: set[Lab] = set()
_HANDLERS_INSTALLED = False


def _close_all() -> None:
    for lab in list(_LABS):
        with contextlib.suppress(Exception):
            lab.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _register(lab: Lab) -> None:
    global _HANDLERS_INSTALLED
    _LABS.add(lab)
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_close_all)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _on_signal)


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate()`` until true or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
