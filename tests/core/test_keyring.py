"""core.keyring: grants by hash, sticky revocation by name, expiry, request validation."""

from __future__ import annotations

import itertools

import pytest

from rumordb.core import keyring as kr
from rumordb.core.merge import merge
from rumordb.core.record import Record
from rumordb.core.store import Store

NOW_MS = 1_700_000_000_000


def record(value: bytes, hlc: int = 1, origin: str = "n1", tombstone: bool = False) -> Record:
    return Record(value, kr.CONTENT_TYPE, {origin: hlc}, hlc, origin, tombstone)


def grant_record(name: str, role: str = "admin", expires_ms: int | None = None) -> Record:
    return record(kr.encode_grant(kr.Grant(name, role, NOW_MS, expires_ms)))


def revocation_record(name: str, origin: str = "n2") -> Record:
    return record(kr.encode_revocation(kr.Revocation(name, NOW_MS)), origin=origin)


def lookup_of(records: dict[str, Record]) -> kr.Lookup:
    return records.get


def test_a_grant_gives_its_role_to_the_key_whose_hash_names_it() -> None:
    digest = kr.digest_of("secret-1")
    records = {kr.grant_key(digest): grant_record("alice", "reader")}
    assert kr.role_of(digest, lookup_of(records), NOW_MS) == "reader"
    assert kr.role_of(kr.digest_of("secret-2"), lookup_of(records), NOW_MS) is None


def test_a_revocation_refuses_every_grant_of_its_name_whatever_the_order() -> None:
    """Sticky by name: one grant seen before the revocation, one concurrent (other side of a
    partition), one arriving afterwards: all refused, in every delivery order."""
    digests = [kr.digest_of(f"secret-{i}") for i in range(3)]
    updates = [(kr.grant_key(d), grant_record("alice")) for d in digests]
    updates.append((kr.revocation_key("alice"), revocation_record("alice")))
    for order in itertools.permutations(updates):
        records: dict[str, Record] = {}
        for key, version in order:
            records[key] = merge(records[key], version) if key in records else version
        for digest in digests:
            assert kr.role_of(digest, lookup_of(records), NOW_MS) is None


def test_a_later_create_of_a_revoked_name_is_refused_with_409() -> None:
    records = {
        kr.grant_key(kr.digest_of("s")): grant_record("alice"),
        kr.revocation_key("alice"): revocation_record("alice"),
    }
    request = kr.CreateRequest("alice", "admin")
    with pytest.raises(kr.KeyringError) as refused:
        kr.refuse_create(request, lookup_of(records), kr.grants(records.items()))
    assert (refused.value.status, refused.value.code) == (409, "name_revoked")


def test_a_create_of_a_live_name_is_refused_and_a_new_name_passes() -> None:
    records = {kr.grant_key(kr.digest_of("s")): grant_record("alice")}
    known = kr.grants(records.items())
    with pytest.raises(kr.KeyringError, match="exists"):
        kr.refuse_create(kr.CreateRequest("alice", "admin"), lookup_of(records), known)
    kr.refuse_create(kr.CreateRequest("bob", "admin"), lookup_of(records), known)


def test_a_full_keyring_refuses_a_create() -> None:
    full = [kr.Grant(f"k{i}", "reader", NOW_MS) for i in range(kr.MAX_KEYS)]
    with pytest.raises(kr.KeyringError) as refused:
        kr.refuse_create(kr.CreateRequest("one-more", "reader"), lookup_of({}), full)
    assert refused.value.code == "keyring_full"
    kr.refuse_create(kr.CreateRequest("one-more", "reader"), lookup_of({}), full[1:])


def test_revoking_an_unknown_or_already_revoked_name_is_404() -> None:
    records = {kr.grant_key(kr.digest_of("s")): grant_record("alice")}
    known = kr.grants(records.items())
    with pytest.raises(kr.KeyringError) as unknown:
        kr.refuse_revoke("bob", lookup_of(records), known)
    assert unknown.value.status == 404
    kr.refuse_revoke("alice", lookup_of(records), known)
    records[kr.revocation_key("alice")] = revocation_record("alice")
    with pytest.raises(kr.KeyringError):
        kr.refuse_revoke("alice", lookup_of(records), known)


def test_an_expired_grant_grants_nothing_from_its_expiry_on() -> None:
    digest = kr.digest_of("s")
    records = {kr.grant_key(digest): grant_record("temp", expires_ms=NOW_MS + 5000)}
    assert kr.role_of(digest, lookup_of(records), NOW_MS + 4999) == "admin"
    assert kr.role_of(digest, lookup_of(records), NOW_MS + 5000) is None


def test_new_grant_puts_an_absolute_expiry_in_the_record() -> None:
    grant = kr.new_grant(kr.CreateRequest("t", "reader", expires_in_s=60), NOW_MS)
    assert grant.expires_ms == NOW_MS + 60_000
    assert kr.new_grant(kr.CreateRequest("t", "reader"), NOW_MS).expires_ms is None


@pytest.mark.parametrize(
    "value",
    [b"", b"not json", b'{"name": "x"}', b'{"name": "x", "role": "root", "created_ms": 1}',
     b'{"name": "a b", "role": "admin", "created_ms": 1}', b"[1, 2]"],
)  # fmt: skip
def test_a_malformed_or_tombstoned_grant_grants_nothing(value: bytes) -> None:
    digest = kr.digest_of("s")
    assert kr.role_of(digest, lookup_of({kr.grant_key(digest): record(value)}), NOW_MS) is None
    dead = {kr.grant_key(digest): record(b"", tombstone=True)}
    assert kr.role_of(digest, lookup_of(dead), NOW_MS) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", "invalid_request"),
        (b'{"name": "a", "role": "admin", "extra": 1}', "invalid_request"),
        (b'{"role": "admin"}', "invalid_request"),
        (b'{"name": "", "role": "admin"}', "invalid_name"),
        (b'{"name": "' + b"a" * 65 + b'", "role": "admin"}', "invalid_name"),
        (b'{"name": "a/b", "role": "admin"}', "invalid_name"),
        (b'{"name": "a", "role": "root"}', "invalid_role"),
        (b'{"name": "a", "role": "admin", "expires_in_s": 0}', "invalid_expiry"),
        (b'{"name": "a", "role": "admin", "expires_in_s": 999999999999}', "invalid_expiry"),
        (b'{"name": "a", "role": "admin", "expires_in_s": "1"}', "invalid_request"),
        (b" " * (kr.MAX_REQUEST_BYTES + 1), "too_large"),
    ],
)
def test_parse_create_refuses_a_bad_request_whole(body: bytes, code: str) -> None:
    with pytest.raises(kr.KeyringError) as refused:
        kr.parse_create(body)
    assert refused.value.code == code and refused.value.status in (400, 413)


def test_parse_create_accepts_a_good_request() -> None:
    body = b'{"name": "ci-bot.2", "role": "reader", "expires_in_s": 3600}'
    assert kr.parse_create(body) == kr.CreateRequest("ci-bot.2", "reader", 3600)


def test_describe_lists_states_and_never_a_hash() -> None:
    records = {
        kr.grant_key(kr.digest_of("a")): grant_record("alice"),
        kr.grant_key(kr.digest_of("b")): grant_record("bob", expires_ms=NOW_MS - 1),
        kr.grant_key(kr.digest_of("c")): grant_record("carol", "reader"),
        kr.revocation_key("carol"): revocation_record("carol"),
        "user-key": record(b"{}"),
    }
    infos = kr.describe(kr.grants(records.items()), lookup_of(records), NOW_MS)
    assert [(i.name, i.state) for i in infos] == [
        ("alice", "active"),
        ("bob", "expired"),
        ("carol", "revoked"),
    ]
    assert all(kr.digest_of("a") not in repr(info) for info in infos)


def test_a_store_listing_hides_the_reserved_keyspace_unless_asked() -> None:
    store = Store()
    for key in ("_rumor/keyring/key/ab", "_a", "a", "zz"):
        store.put(key, record(b"v"))
    assert store.list_live("", 10, "") == ["_a", "a", "zz"]
    assert store.list_live("_rumor/", 10, "") == []
    assert store.list_live("_rumor/", 10, "", reserved=True) == ["_rumor/keyring/key/ab"]
    assert store.reserved == 1
    store.put("_rumor/keyring/key/ab", record(b"w", hlc=2))
    assert store.reserved == 1
    store.drop("_rumor/keyring/key/ab")
    store.drop("_rumor/keyring/key/ab")
    assert store.reserved == 0


def test_every_member_owns_the_reserved_keyspace_even_sharded() -> None:
    from rumordb.core.membership import StaticMembership
    from rumordb.core.placement import Placement

    ids = tuple(f"n{i}" for i in range(1, 6))
    members = StaticMembership("n1", ids, {member: i for i, member in enumerate(ids)})
    placement = Placement(
        members, sharding=True, replicas=2, vnodes=16, ring=None, on_new_ring=lambda: None
    )
    key = kr.grant_key(kr.digest_of("s"))
    assert sorted(placement.owners(key)) == [f"n{i}" for i in range(1, 6)]
    assert placement.route(key) is None
    assert sorted(placement.shared_owners()(key)) == [f"n{i}" for i in range(1, 6)]
    assert len(placement.owners("user-key")) == 2
