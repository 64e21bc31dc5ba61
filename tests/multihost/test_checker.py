"""The set checker's classifier on hand-made histories: each verdict must be detectable.

These run everywhere (no root, no network): they pin down what lost / superseded /
unexpected mean, so the multi-host scenarios and ``rumor check`` can trust the counts.
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from rumordb.core.context import encode_context
from rumordb.live.checker import (
    Kind,
    Op,
    Snapshot,
    Status,
    Version,
    classify,
    differing_keys,
    dump_history,
    identical,
    load_history,
    record_reply,
    wait_identical,
)

A, B, C = "http://a", "http://b", "http://c"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write(op_id: int, key: str, value: str, clock: dict[str, int], hlc: int, origin: str) -> Op:
    return Op(
        id=op_id,
        kind=Kind.WRITE,
        key=key,
        node=A,
        invoked_s=float(op_id),
        value=value,
        status=Status.OK,
        clock=clock,
        hlc=hlc,
        origin=origin,
    )


def delete(op_id: int, key: str, clock: dict[str, int], hlc: int, origin: str | None) -> Op:
    return Op(
        id=op_id,
        kind=Kind.DELETE,
        key=key,
        node=A,
        invoked_s=float(op_id),
        status=Status.OK,
        clock=clock,
        hlc=hlc,
        origin=origin,
    )


def held(op: Op) -> Version:
    """The version a node holds after applying ``op``."""
    assert op.clock is not None and op.hlc is not None
    return Version(
        clock=op.clock,
        hlc=op.hlc,
        origin=op.origin or "n1",
        tombstone=op.kind is Kind.DELETE,
        value_sha256=_sha(op.value or ""),
    )


def everywhere(versions: dict[str, Version | None], nodes: tuple[str, ...] = (A, B)) -> Snapshot:
    return {node: dict(versions) for node in nodes}


def test_a_write_held_by_every_node_is_present() -> None:
    w = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    report = classify([w], everywhere({"k": held(w)}))
    assert (report.present, len(report.lost), len(report.superseded)) == (1, 0, 0)
    assert not report.unexpected and report.identical and report.passed


def test_an_acknowledged_write_missing_on_one_node_is_lost() -> None:
    w = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    report = classify([w], {A: {"k": held(w)}, B: {"k": None}})
    assert [f.op for f in report.lost] == [0]
    assert report.lost[0].node == B
    assert not report.passed and not report.identical


def test_an_older_version_left_on_a_node_loses_the_newer_write() -> None:
    w1 = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    w2 = write(1, "k", "v1", {"n1": 2}, 200, "n1")
    report = classify([w1, w2], {A: {"k": held(w2)}, B: {"k": held(w1)}})
    assert [f.op for f in report.lost] == [1]
    assert [f.op for f in report.superseded] == [0]


def test_descendant_clock_supersedes_regardless_of_hlc() -> None:
    # w2 causally follows w1 but carries a smaller HLC (a skewed clock): it still wins.
    w1 = write(0, "k", "v0", {"n1": 1}, 500, "n1")
    w2 = write(1, "k", "v1", {"n1": 1, "n2": 1}, 400, "n2")
    report = classify([w1, w2], everywhere({"k": held(w2)}))
    assert [f.op for f in report.superseded] == [0]
    assert not report.lost and report.present == 1


def test_concurrent_writes_resolve_by_larger_hlc() -> None:
    w1 = write(0, "k", "v0", {"n1": 1}, 300, "n1")
    w2 = write(1, "k", "v1", {"n2": 1}, 200, "n2")
    won = classify([w1, w2], everywhere({"k": held(w1)}))
    assert [f.op for f in won.superseded] == [1] and not won.lost
    # The node keeping the smaller HLC of two concurrent writes has lost the larger one.
    wrong = classify([w1, w2], everywhere({"k": held(w2)}))
    assert [f.op for f in wrong.lost] == [0]


def test_concurrent_writes_with_equal_hlc_resolve_by_origin() -> None:
    w1 = write(0, "k", "v0", {"n1": 1}, 300, "n1")
    w2 = write(1, "k", "v1", {"n2": 1}, 300, "n2")
    assert [f.op for f in classify([w1, w2], everywhere({"k": held(w2)})).superseded] == [0]
    assert [f.op for f in classify([w1, w2], everywhere({"k": held(w1)})).lost] == [1]


def test_a_causally_older_version_does_not_supersede() -> None:
    w1 = write(0, "k", "v0", {"n1": 2}, 100, "n1")
    older = Version(clock={"n1": 1}, hlc=900, origin="n1", tombstone=False, value_sha256="x")
    report = classify([w1], everywhere({"k": older}))
    assert [f.op for f in report.lost] == [0]


def test_a_purged_key_supersedes_writes_only_if_a_delete_could_win() -> None:
    w = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    d = delete(1, "k", {"n1": 2}, 200, "n1")
    gone = everywhere({"k": None})
    report = classify([w, d], gone)
    assert [f.op for f in report.superseded] == [0] and not report.lost
    # A delete that is causally older than the write cannot explain its absence.
    old_delete = delete(1, "k", {"n1": 1}, 50, "n1")
    w2 = write(0, "k", "v0", {"n1": 2}, 100, "n1")
    assert [f.op for f in classify([w2, old_delete], gone).lost] == [0]


def test_an_unknown_delete_may_explain_a_missing_write() -> None:
    w = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    d = Op(id=1, kind=Kind.DELETE, key="k", node=B, invoked_s=1.0, status=Status.UNKNOWN)
    report = classify([w, d], everywhere({"k": None}))
    assert not report.lost and [f.op for f in report.superseded] == [0]
    assert report.unknown == 1 and report.availability == 0.5


def test_a_failed_delete_does_not_explain_a_missing_write() -> None:
    w = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    d = Op(id=1, kind=Kind.DELETE, key="k", node=B, invoked_s=1.0, status=Status.FAILED)
    assert [f.op for f in classify([w, d], everywhere({"k": None})).lost] == [0]


def test_a_tombstone_held_everywhere_is_the_delete_present() -> None:
    w = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    d = delete(1, "k", {"n1": 2}, 200, None)  # delete replies may lack the origin
    report = classify([w, d], everywhere({"k": held(d)}))
    assert report.present == 1 and [f.op for f in report.superseded] == [0]
    assert not report.lost and not report.unexpected and report.identical


def test_a_value_nobody_wrote_is_unexpected() -> None:
    w = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    forged = Version(clock={"n1": 2}, hlc=200, origin="n1", tombstone=False, value_sha256="x")
    report = classify([w], {A: {"k": forged}, B: {"k": forged, "other": forged}})
    assert {(f.node, f.key) for f in report.unexpected} == {(A, "k"), (B, "k"), (B, "other")}
    assert all(f.reason == "a value nobody wrote" for f in report.unexpected)
    assert [f.op for f in report.superseded] == [0]  # the forged version did descend it


def test_a_value_of_a_failed_write_is_unexpected() -> None:
    failed = Op(
        id=0, kind=Kind.WRITE, key="k", node=A, invoked_s=0, value="v0", status=Status.FAILED
    )
    v = Version(clock={"n1": 1}, hlc=1, origin="n1", tombstone=False, value_sha256=_sha("v0"))
    report = classify([failed], everywhere({"k": v}))
    assert [f.reason for f in report.unexpected] == ["a value whose write failed"] * 2


def test_a_value_of_an_unknown_write_is_expected() -> None:
    maybe = Op(
        id=0, kind=Kind.WRITE, key="k", node=A, invoked_s=0, value="v0", status=Status.UNKNOWN
    )
    v = Version(clock={"n1": 1}, hlc=1, origin="n1", tombstone=False, value_sha256=_sha("v0"))
    report = classify([maybe], everywhere({"k": v}))
    assert not report.unexpected and not report.lost and report.passed


def test_a_deleted_key_that_comes_back_is_resurrected() -> None:
    w = write(0, "k", "v0", {"n1": 1}, 100, "n1")
    d = delete(1, "k", {"n1": 2}, 200, "n1")
    report = classify([w, d], {A: {"k": held(d)}, B: {"k": held(w)}})
    assert [(f.node, f.op) for f in report.unexpected] == [(B, 1)]
    assert report.unexpected[0].reason.startswith("resurrected")
    assert [f.op for f in report.lost] == [1]  # the delete is missing on B as well
    assert not report.identical


def test_a_write_after_a_delete_is_not_a_resurrection() -> None:
    d = delete(0, "k", {"n1": 1}, 100, "n1")
    w = write(1, "k", "v1", {"n1": 2}, 200, "n1")
    report = classify([d, w], everywhere({"k": held(w)}))
    assert not report.unexpected and not report.lost
    assert [f.op for f in report.superseded] == [0]


def test_identical_ignores_tombstone_versus_purged() -> None:
    d = delete(0, "k", {"n1": 1}, 100, "n1")
    w = write(1, "j", "v", {"n1": 1}, 100, "n1")
    assert identical({A: {"k": held(d), "j": held(w)}, B: {"k": None, "j": held(w)}})
    assert not identical({A: {"j": held(w)}, B: {"j": None}})
    other = write(2, "j", "v2", {"n2": 1}, 100, "n2")
    assert not identical({A: {"j": held(w)}, B: {"j": held(other)}, C: {"j": held(w)}})


def test_record_reply_maps_statuses() -> None:
    context = encode_context({"n1": 3}, 777)
    ok = Op(id=0, kind=Kind.WRITE, key="k", node=A, invoked_s=0, value="v")
    record_reply(ok, 201, {"context": context, "hlc": 777, "origin": "n1"})
    assert (ok.status, ok.clock, ok.hlc, ok.origin) == (Status.OK, {"n1": 3}, 777, "n1")
    gone = Op(id=1, kind=Kind.DELETE, key="k", node=A, invoked_s=0)
    record_reply(gone, 200, {"context": context, "deleted": True})
    assert (gone.status, gone.hlc, gone.origin) == (Status.OK, 777, None)
    refused = Op(id=2, kind=Kind.DELETE, key="k", node=A, invoked_s=0)
    record_reply(refused, 404, {"error": "not_found"})
    assert refused.status is Status.FAILED
    broken = Op(id=3, kind=Kind.WRITE, key="k", node=A, invoked_s=0, value="v")
    record_reply(broken, 503, {})
    assert broken.status is Status.UNKNOWN
    bad_context = Op(id=4, kind=Kind.WRITE, key="k", node=A, invoked_s=0, value="v")
    record_reply(bad_context, 200, {"context": "!!!"})
    assert bad_context.status is Status.UNKNOWN


def test_history_round_trips_through_json() -> None:
    ops = [write(0, "k", "v0", {"n1": 1}, 100, "n1"), delete(1, "k", {"n1": 2}, 200, None)]
    assert load_history(dump_history(ops)) == ops


def test_a_later_write_with_an_older_clock_is_lost_as_a_clock_regression() -> None:
    # What a node that forgot a purged tombstone's clock would do: restart its counters.
    w1 = write(0, "k", "v0", {"n1": 1, "n2": 1}, 100, "n1")
    w2 = write(1, "k", "v1", {"n1": 1}, 200, "n1")
    report = classify([w1, w2], everywhere({"k": held(w2)}))
    assert [f.op for f in report.lost] == [0]
    assert "clock went backwards" in report.lost[0].reason


def test_differing_keys_names_exactly_the_disagreements() -> None:
    w = write(0, "k", "v", {"n1": 1}, 100, "n1")
    other = write(1, "j", "v2", {"n2": 1}, 100, "n2")
    snap: Snapshot = {A: {"k": held(w), "j": held(other)}, B: {"k": held(w)}, C: {"k": None}}
    assert differing_keys(snap) == {"k", "j"}
    assert differing_keys({A: {"k": held(w)}, B: {"k": held(w)}}) == set()


def test_wait_identical_polls_until_a_lagging_node_catches_up() -> None:
    w = write(0, "k", "v", {"n1": 1}, 100, "n1")
    meta = {
        "clock": w.clock, "hlc": w.hlc, "origin": "n1", "tombstone": False,
        "value_sha256": _sha("v"), "node": "n1",
    }  # fmt: skip
    reads = {"b": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/kv":
            return httpx.Response(200, json={"keys": [], "next": None})
        if request.url.host == "b":
            reads["b"] += 1
            if reads["b"] < 4:  # B learns the write only on its 4th read
                return httpx.Response(404, json={"error": "not_found", "detail": ""})
        return httpx.Response(200, json=meta)

    async def run() -> tuple[Snapshot, float | None]:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport) as client:
            return await wait_identical(client, ["http://a", "http://b"], ["k"], "", None, 5.0)

    snap, took_s = asyncio.run(run())
    assert took_s is not None and identical(snap) and reads["b"] >= 4
    assert snap["http://b"]["k"] == held(w)


def test_wait_identical_gives_up_at_the_deadline() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/kv":
            return httpx.Response(200, json={"keys": [], "next": None})
        if request.url.host == "b":
            return httpx.Response(404, json={"error": "not_found", "detail": ""})
        meta = {"clock": {"n1": 1}, "hlc": 5, "origin": "n1", "value_sha256": "x"}
        return httpx.Response(200, json=meta)

    async def run() -> tuple[Snapshot, float | None]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await wait_identical(client, ["http://a", "http://b"], ["k"], "", None, 0.3)

    snap, took_s = asyncio.run(run())
    assert took_s is None and not identical(snap)
