"""Membership routes: readiness (``GET /ready``), leave and forget (admin).

``/ready`` needs no key (orchestrator probes send none) and tells only whether to send
this node traffic: 200 once it has loaded its data, joined and caught up, 503 before and
while it leaves (``Runner.readiness``). ``POST /admin/leave`` makes the node leave the
cluster (as SIGTERM does) and answers the handoff report; ``POST /admin/forget/{id}``
removes a dead or left member for good, and refuses (409) one that is alive or suspect.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from rumordb.core import ForgetRefused
from rumordb.live.errors import HttpError
from rumordb.live.runner import Runner
from rumordb.live.settings import check_node_id


def add_member_routes(app: FastAPI, runner: Runner, admin: Any) -> None:
    """``admin``: the dependency that lets admin keys through (``app._require``)."""
    needs_admin = [Depends(admin)]

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Readiness: joined and caught up (no auth); 503 before and while leaving",
        responses={503: {"description": "not ready: the reason in `detail`"}},
    )
    async def ready() -> JSONResponse:
        ok, reason = runner.readiness()
        if not ok:
            raise HttpError(503, "not_ready", reason)
        return JSONResponse({"status": "ready", "node_id": runner.node_id, "detail": reason})

    @app.post(
        "/admin/leave",
        tags=["cluster"],
        summary="Leave the cluster: announce `left`, hand keys off (sharded), report",
        dependencies=needs_admin,
    )
    async def leave() -> dict[str, Any]:
        if not runner.running:
            raise HttpError(503, "unavailable", "the node is starting or stopping")
        return await runner.leave()

    @app.post(
        "/admin/forget/{member_id}",
        tags=["cluster"],
        summary="Forget a dead or left member for good (409 if alive or suspect)",
        dependencies=needs_admin,
        responses={
            400: {"description": "not a node id"},
            404: {"description": "no such member"},
            409: {"description": "alive or suspect"},
        },
    )
    async def forget(member_id: str) -> dict[str, Any]:
        if not runner.running:
            raise HttpError(503, "unavailable", "the node is starting or stopping")
        try:
            check_node_id(member_id)
        except ValueError as exc:
            raise HttpError(400, "invalid_node_id", str(exc)) from None
        try:
            forgotten = runner.forget(member_id)
        except ForgetRefused as exc:
            raise HttpError(409, "member_active", str(exc)) from None
        if not forgotten:
            raise HttpError(404, "not_found", f"{member_id} is not a member here")
        return {"forgotten": member_id, "node_id": runner.node_id}
