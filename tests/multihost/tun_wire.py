"""A delayed point-to-point wire between two lab namespaces, made of two TUN devices.

Why not ``tc netem``: many kernels (this CI machine's among them) are built without
``sch_netem``, and then no qdisc can hold a packet back. A TUN device hands every IP packet
the kernel routes into it to a user-space file descriptor instead, so a small relay can
hold each packet for a while and then write it into the other namespace's TUN device.
Both kernels see a real slow link: TCP's handshake, its ACKs and Nagle's wait for them all
cross it, which is what a test of TCP_NODELAY needs.

Run inside the near namespace (``ip netns exec NEAR python -m tests.multihost.tun_wire
--far-netns FAR ...``): the relay opens ``--device`` there, enters FAR (``setns``; file
descriptors keep the namespace they were made in) and opens the same name there. The
devices vanish when the relay exits, so killing it by PID is the whole cleanup. Packets
from near to far wait ``--delay-ms``; packets back are not held (as netem on one switch
port did: a round trip costs the delay once).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import heapq
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MAX_PACKET = 65_535
MAX_HELD = 10_000  # packets in flight on the wire; beyond that the wire drops, like a queue


def open_tun(name: str) -> int:
    """A TUN device called ``name`` in the current network namespace, non-blocking."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{name}", "rb") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")


def relay(near: int, far: int, delay_s: float) -> None:
    """Forever: near -> far after ``delay_s``, far -> near at once."""
    held: list[tuple[float, int, bytes]] = []
    seq = 0
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else None
        readable, _, _ = select.select([near, far], [], [], timeout)
        now = time.monotonic()
        if near in readable:
            for packet in _drain(near):
                if len(held) < MAX_HELD:
                    seq += 1
                    heapq.heappush(held, (now + delay_s, seq, packet))
        if far in readable:
            for packet in _drain(far):
                _write(near, packet)
        while held and held[0][0] <= time.monotonic():
            _write(far, heapq.heappop(held)[2])


def _drain(fd: int) -> list[bytes]:
    packets = []
    while True:
        try:
            packets.append(os.read(fd, MAX_PACKET))
        except BlockingIOError:
            return packets


def _write(fd: int, packet: bytes) -> None:
    with contextlib.suppress(OSError):  # a full device queue drops it, as a busy link would
        os.write(fd, packet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--far-netns", required=True)
    parser.add_argument("--device", default="dly0")
    parser.add_argument("--delay-ms", type=int, required=True)
    args = parser.parse_args(argv)
    if not 0 <= args.delay_ms <= 10_000:
        parser.error("--delay-ms must be within 0..10000")
    near = open_tun(args.device)
    enter_netns(args.far_netns)
    far = open_tun(args.device)
    print("ready", flush=True)
    relay(near, far, args.delay_ms / 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
