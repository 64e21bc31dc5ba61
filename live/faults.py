"""Fault injection for experiments: partitions, delay, loss, paused gossip, no root needed.

Faults act on node-to-node traffic only, at the two places it crosses this node: the
gossip client's send path (``allow_send``, ``delay_s``) and the ``POST /gossip`` receive
path (``allow_receive``). Client requests are never touched, so an experimenter can still
read every node while it is cut off. A ``POST /faults`` is merged into the current faults;
``DELETE /faults`` heals everything. Only enabled by ``--allow-faults``.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec


class FaultRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of ``POST /faults``; every field is optional and merged."""

    block: list[str] | None = None
    block_to: list[str] | None = None
    block_from: list[str] | None = None
    delay_ms: int | None = None
    loss: float | None = None
    pause_gossip: bool | None = None


class FaultError(ValueError):
    """A fault request that does not make sense (negative delay, loss outside 0..1)."""


_decoder = msgspec.json.Decoder(FaultRequest)


def parse_request(body: bytes) -> FaultRequest:
    try:
        request = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise FaultError(f"malformed fault request: {exc}") from exc
    if request.delay_ms is not None and not 0 <= request.delay_ms <= 60_000:
        raise FaultError("delay_ms must be between 0 and 60000")
    if request.loss is not None and not 0.0 <= request.loss <= 1.0:
        raise FaultError("loss must be between 0 and 1")
    return request


class Faults:
    """The faults in force on this node."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.block_to: set[str] = set()
        self.block_from: set[str] = set()
        self.delay_ms = 0
        self.loss = 0.0
        self.pause_gossip = False

    @property
    def active(self) -> bool:
        return bool(
            self.block_to or self.block_from or self.delay_ms or self.loss or self.pause_gossip
        )

    def apply(self, request: FaultRequest) -> None:
        if request.block:
            self.block_to.update(request.block)
            self.block_from.update(request.block)
        if request.block_to:
            self.block_to.update(request.block_to)
        if request.block_from:
            self.block_from.update(request.block_from)
        if request.delay_ms is not None:
            self.delay_ms = request.delay_ms
        if request.loss is not None:
            self.loss = request.loss
        if request.pause_gossip is not None:
            self.pause_gossip = request.pause_gossip

    def heal(self) -> None:
        self.block_to.clear()
        self.block_from.clear()
        self.delay_ms = 0
        self.loss = 0.0
        self.pause_gossip = False

    def allow_send(self, peer: str) -> bool:
        """False when a message to ``peer`` must be dropped (blocked, paused or lost)."""
        if self.pause_gossip or peer in self.block_to:
            return False
        return not (self.loss and self._rng.random() < self.loss)

    def allow_receive(self, sender: str) -> bool:
        return sender not in self.block_from

    def delay_s(self) -> float:
        return self.delay_ms / 1000

    def describe(self) -> dict[str, Any]:
        return {
            "block_to": sorted(self.block_to),
            "block_from": sorted(self.block_from),
            "delay_ms": self.delay_ms,
            "loss": self.loss,
            "pause_gossip": self.pause_gossip,
        }
