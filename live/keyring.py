"""The replicated keyring on a live node: the gate's lookup and the ``/admin/keys`` routes.

The rules (record layout, sticky revocation by name, expiry) are ``core.keyring``'s; this
module binds them to a running node: lookups read the node's own records (every node
holds the whole reserved keyspace, sharded or not), and a create or a revocation is a
client write of a reserved record through the runner, so it is group-committed, pushed
to the peers at once and repaired by anti-entropy like any value.

Routes (admin keys only; errors are ``{"error", "detail"}``):

* ``POST /admin/keys`` ``{"name", "role", "expires_in_s"?}`` -> 201 with the key, shown
  this once (only its SHA-256 is stored); 409 if the name exists here or was revoked;
* ``GET /admin/keys`` -> ``{"keys": [{name, role, created, expires, state}]}``;
* ``DELETE /admin/keys/{name}`` -> 200; 404 if no unrevoked key of that name is known here.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.params import Depends

from rumordb.core import WriteCommand, WriteResult, WriteStatus
from rumordb.core import keyring as rules
from rumordb.core.record import Record
from rumordb.live.asgi import read_body
from rumordb.live.auth import MAX_PRESENTED_KEY_CHARS, Role, generate_key
from rumordb.live.errors import HttpError
from rumordb.live.forward import Request as Relay
from rumordb.live.openapi import AUTH_STATUSES, errors
from rumordb.live.runner import NotStored, Runner

_ROLES = {role.value: role for role in Role}


class ClusterKeyring:
    """The keyring of one node (see the module doc); ``clock`` is wall time in seconds."""

    def __init__(self, runner: Runner, clock: Callable[[], float] = time.time) -> None:
        self.runner = runner
        self._clock = clock
        # One change at a time on this node: two creates of a name here cannot both pass
        # the name check before either is written (across nodes the rule copes with it).
        self._changing = asyncio.Lock()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _lookup(self, key: str) -> Record | None:
        return self.runner.view.version(key)

    def role_for(self, presented_key: str) -> Role | None:
        """The role a replicated key grants now (the gate's second lookup), or None."""
        # Loading, the reserved keyspace is in memory already (``Runner.start``).
        serving = self.runner.running or self.runner.loading
        if not serving or len(presented_key) > MAX_PRESENTED_KEY_CHARS:
            return None
        role = rules.role_of(rules.digest_of(presented_key), self._lookup, self._now_ms())
        return None if role is None else _ROLES[role]

    def _grants(self) -> list[rules.Grant]:
        """The grants held here, at most ``MAX_KEYS`` (a scan of the sorted key index)."""
        view = self.runner.view
        keys = view.list_keys(rules.GRANT_PREFIX, rules.MAX_KEYS, reserved=True)
        return rules.grants((key, record) for key in keys if (record := view.get(key)))

    def describe(self) -> list[dict[str, Any]]:
        infos = rules.describe(self._grants(), self._lookup, self._now_ms())
        return [
            {
                "name": info.name,
                "role": info.role,
                "created": _iso(info.created_ms),
                "expires": None if info.expires_ms is None else _iso(info.expires_ms),
                "state": info.state,
            }
            for info in infos
        ]

    async def create(self, body: bytes) -> dict[str, Any]:
        request = rules.parse_create(body)
        key = generate_key()
        async with self._changing:
            rules.refuse_create(request, self._lookup, self._grants())
            grant = rules.new_grant(request, self._now_ms())
            await self._write(rules.grant_key(rules.digest_of(key)), rules.encode_grant(grant))
        return {
            "name": grant.name,
            "role": grant.role,
            "created": _iso(grant.created_ms),
            "expires": None if grant.expires_ms is None else _iso(grant.expires_ms),
            "key": key,
        }

    async def revoke(self, name: str) -> dict[str, Any]:
        async with self._changing:
            rules.refuse_revoke(name, self._lookup, self._grants())
            revocation = rules.Revocation(name, self._now_ms())
            await self._write(rules.revocation_key(name), rules.encode_revocation(revocation))
        return {"name": name, "revoked": True, "revoked_at": _iso(revocation.revoked_ms)}

    async def _write(self, key: str, value: bytes) -> None:
        command = WriteCommand(key, value, rules.CONTENT_TYPE)
        relay = Relay("PUT", key.encode(), b"", (), value, True)
        answer = await self.runner.write(command, relay)
        if isinstance(answer, NotStored):
            raise HttpError(503, answer.error, answer.detail)
        if not isinstance(answer, WriteResult) or answer.status not in _WRITTEN:
            raise HttpError(503, "not_written", f"the keyring record was not written: {answer}")


_WRITTEN = (WriteStatus.OK, WriteStatus.CREATED)


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


def _refused(exc: rules.KeyringError) -> HttpError:
    return HttpError(exc.status, exc.code, exc.detail)


def add_keyring_routes(app: FastAPI, keyring: ClusterKeyring, admin: Depends) -> None:
    """The ``/admin/keys`` routes: thin, each one call into ``keyring``."""

    @app.post("/admin/keys", tags=["admin"], summary="Create an API key (shown once)",
              dependencies=[admin], status_code=201, openapi_extra=CREATE_BODY,
              responses=errors(*AUTH_STATUSES, 403, 409, 413, 503))  # fmt: skip
    async def create_key(request: Request) -> dict[str, Any]:
        if not keyring.runner.running:
            raise HttpError(503, "unavailable", "the node is starting or stopping")
        body = await read_body(
            request.receive,
            rules.MAX_REQUEST_BYTES,
            request.headers.get("content-length", "").encode() or None,
            too_large=("too_large", "a key request"),
        )
        try:
            return await keyring.create(body)
        except rules.KeyringError as exc:
            raise _refused(exc) from None

    @app.get("/admin/keys", tags=["admin"], summary="List API keys (never their secrets)",
             dependencies=[admin], responses=errors(*AUTH_STATUSES, 403, 503))  # fmt: skip
    async def list_keys() -> dict[str, Any]:
        if not keyring.runner.running:
            raise HttpError(503, "unavailable", "the node is starting or stopping")
        return {"keys": keyring.describe()}

    @app.delete("/admin/keys/{name}", tags=["admin"], summary="Revoke every key of a name",
                dependencies=[admin],
                responses=errors(*AUTH_STATUSES, 403, 404, 503))  # fmt: skip
    async def revoke_key(name: str) -> dict[str, Any]:
        if not keyring.runner.running:
            raise HttpError(503, "unavailable", "the node is starting or stopping")
        try:
            return await keyring.revoke(name)
        except rules.KeyringError as exc:
            raise _refused(exc) from None


CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "role"],
                    "properties": {
                        "name": {"type": "string", "pattern": rules.NAME_PATTERN.pattern},
                        "role": {"type": "string", "enum": list(rules.ROLES)},
                        "expires_in_s": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": rules.MAX_EXPIRES_IN_S,
                        },
                    },
                }
            }
        },
    }
}
