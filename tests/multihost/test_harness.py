"""The namespace lab itself: wiring, isolation from the outside, fault primitives, cleanup.

A trivial HTTP server (``python -m http.server`` on each host's address) stands in for a
node, so these tests pin down the harness independently of RumorDB.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable

import pytest

from tests.multihost.netns import BROADCAST, PYTHON, Lab, our_namespaces, wait_for

pytestmark = pytest.mark.multihost

HTTP_PORT = 8000
UDP_PORT = 7999


def serve(lab: Lab, host: str) -> subprocess.Popen[bytes]:
    address = lab.hosts[host].address
    proc = lab.spawn(
        host, [PYTHON, "-m", "http.server", "--bind", address, str(HTTP_PORT)], cwd=None
    )
    assert wait_for(lambda: reachable(lab, "ctl", host), 10.0), f"{host} never served"
    return proc


def reachable(lab: Lab, src: str, dst: str, timeout_s: float = 0.5) -> bool:
    url = lab.hosts[dst].url(HTTP_PORT) + "/"
    done = lab.client("probe", url, "--timeout", str(timeout_s), host=src, check=False)
    return done.returncode == 0


def datagrams(
    lab: Lab, src: str, dst_address: str, count: int, listeners: list[str]
) -> dict[str, int]:
    """Send ``count`` datagrams from ``src``; how many each listener received."""
    procs = {}
    for host in listeners:
        argv = [PYTHON, "-m", "tests.multihost.client", "udp-listen", "--port", str(UDP_PORT)]
        procs[host] = subprocess.Popen(
            ["ip", "netns", "exec", lab.hosts[host].namespace, *argv, "--seconds", "3"],
            stdout=subprocess.PIPE,
            text=True,
        )
    try:
        for proc in procs.values():
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["listening"]
        lab.client(
            "udp-send", "--to", dst_address, "--port", str(UDP_PORT), "--count", str(count),
            "--interval", "0.002", host=src,
        )  # fmt: skip
        results = {}
        for host, proc in procs.items():
            out, _ = proc.communicate(timeout=10)
            results[host] = json.loads(out.strip().splitlines()[-1])["received"]
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def test_hosts_reach_each_other_over_the_switch(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(3)
    for host in ("h1", "h2", "h3"):
        serve(lab, host)
    assert all(reachable(lab, "ctl", h) for h in ("h1", "h2", "h3"))
    assert reachable(lab, "h1", "h2") and reachable(lab, "h3", "h1")


def test_no_namespace_has_a_route_out(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(2)
    assert lab.default_routes() == {ns: "" for ns in lab.namespaces()}
    for host in lab.hosts.values():
        # The kernel refuses at once: no route, so not a single packet is sent.
        outside = lab.exec(host.name, ["ip", "route", "get", "192.0.2.1"], check=False)
        assert outside.returncode != 0 and "unreachable" in outside.stderr.lower()
    # The switch has no address at all, and the root namespace holds none of the lab.
    assert "inet " not in lab.sw("ip", "-4", "addr", "show")
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert lab.tag not in root_links


def test_broadcast_reaches_every_other_host(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(3)
    received = datagrams(lab, "h1", BROADCAST, 5, ["h2", "h3", "ctl"])
    assert received == {"h2": 5, "h3": 5, "ctl": 5}


def test_partition_blocks_across_sides_and_heal_restores(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(4)
    for host in ("h1", "h2", "h3", "h4"):
        serve(lab, host)
    lab.partition(["h1", "h2"], ["h3", "h4"])
    assert reachable(lab, "h1", "h2") and reachable(lab, "h3", "h4")
    assert not reachable(lab, "h1", "h3") and not reachable(lab, "h4", "h2")
    assert all(reachable(lab, "ctl", h) for h in ("h1", "h2", "h3", "h4"))
    lab.heal()
    assert "drop" not in lab.rules()
    # ARP entries that failed during the partition resolve again within moments.
    assert wait_for(lambda: reachable(lab, "h1", "h3") and reachable(lab, "h4", "h2"), 10.0)


def test_one_way_cut_drops_only_one_direction(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(2)
    lab.cut("h1", "h2")
    assert datagrams(lab, "h1", lab.hosts["h2"].address, 5, ["h2"]) == {"h2": 0}
    assert datagrams(lab, "h2", lab.hosts["h1"].address, 5, ["h1"]) == {"h1": 5}


def test_isolate_cuts_one_host_from_all_others(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(3)
    lab.isolate("h2")
    received = datagrams(lab, "h2", BROADCAST, 5, ["h1", "h3", "ctl"])
    assert received == {"h1": 0, "h3": 0, "ctl": 5}


def test_loss_drops_about_that_share(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(2)
    lab.loss("h1", 25)
    count = 400
    got = datagrams(lab, "h1", lab.hosts["h2"].address, count, ["h2"])["h2"]
    # Binomial(400, 0.75): mean 300, sd ~8.7; the bounds are ~6 sd wide.
    assert 250 <= got <= 350, got


def test_pause_and_kill_reach_the_served_process(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(1)
    proc = serve(lab, "h1")
    lab.signal(proc, signal.SIGSTOP)
    assert not reachable(lab, "ctl", "h1")
    lab.signal(proc, signal.SIGCONT)
    assert wait_for(lambda: reachable(lab, "ctl", "h1"), 5.0)
    lab.signal(proc, signal.SIGKILL)
    assert proc.wait(5) == -signal.SIGKILL
    assert not reachable(lab, "ctl", "h1")
    serve(lab, "h1")  # a restart in the same namespace serves again


def test_close_kills_processes_and_removes_every_namespace() -> None:
    lab = Lab().up(2)
    try:
        proc = serve(lab, "h1")
        names = lab.namespaces()
        assert set(names) <= set(our_namespaces())
    finally:
        lab.close()
    assert proc.poll() is not None
    assert not set(names) & set(our_namespaces())
    lab.close()  # idempotent
