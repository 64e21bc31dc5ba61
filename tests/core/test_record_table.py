"""The packed record table: reads give back equal records; a key costs its value plus a little."""

from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core.record import Record, is_live
from rumordb.core.record_table import MAX_INTERNED_TYPES, RecordTable

records = st.builds(
    Record,
    value=st.binary(max_size=64),
    content_type=st.sampled_from(["text/plain", "application/octet-stream", "image/png"]),
    clock=st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 2**63), max_size=4),
    hlc=st.integers(0, 2**63),
    origin=st.text(max_size=8),
    tombstone=st.booleans(),
    expires=st.integers(0, 2**63),
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), records, max_size=20))
def test_every_record_reads_back_equal(stored: dict[str, Record]) -> None:
    table = RecordTable()
    for key, record in stored.items():
        assert table.put(key, record), "a new key"
    assert dict(table.items()) == stored and table == stored
    assert len(table) == len(stored) and set(table) == set(stored) == set(table.keys())
    for key, record in stored.items():
        assert key in table and table[key] == record == table.get(key)
        assert table.version(key) == (record.hlc, record.origin, record.tombstone)
    assert table.version("\x00 not stored") is None or "\x00 not stored" in stored


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=12), records, max_size=20),
    st.sampled_from([-1, 0, 2**62, 2**63]),
    st.booleans(),
    st.booleans(),
)
def test_live_of_keeps_the_keys_is_live_keeps_in_order(
    stored: dict[str, Record], now_hlc: int, bulk: bool, inline: bool
) -> None:
    """Either packing (``put_new``'s tuples, ``put``'s struct with defaults omitted, a
    content type inline past the interned bound), tombstones and expiries at any instant."""
    table = RecordTable()
    for i in range(MAX_INTERNED_TYPES if inline else 0):  # later content types: inline
        table.put(f"\x00filler{i}", Record(b"", f"type/{i}", {}, 0, "o"))
    if bulk:
        table.put_new(stored)
    else:
        for key, record in stored.items():
            table.put(key, record)
    keys = sorted(stored)
    assert list(table.live_of(keys, now_hlc)) == [k for k in keys if is_live(stored[k], now_hlc)]


def test_put_says_new_pop_says_held_and_get_defaults() -> None:
    table = RecordTable()
    first = Record(b"1", "text/plain", {"n1": 5}, 5, "n1")
    assert table.put("k", first) and not table.put("k", first)
    assert table.get("missing") is None and "missing" not in table
    assert table.pop("k") and not table.pop("k") and len(table) == 0


def test_a_100_byte_value_costs_at_most_32_bytes_of_metadata() -> None:
    """The content type is interned: inline, "application/octet-stream" alone is 25 bytes."""
    table = RecordTable()
    hlc = 1_764_621_000_000 << 16
    for i in range(3):
        record = Record(bytes(100), "application/octet-stream", {"n1": hlc + i}, hlc + i, "n1")
        table.put(f"k{i}", record)
    assert table.packed_bytes("k2") - 100 <= 32


def test_content_types_past_the_interned_bound_are_stored_inline() -> None:
    table = RecordTable()
    for i in range(MAX_INTERNED_TYPES + 10):
        table.put(f"k{i}", Record(b"v", f"type/{i}", {}, i, "n1"))
    for i in range(MAX_INTERNED_TYPES + 10):
        assert table[f"k{i}"].content_type == f"type/{i}"
    assert table.packed_bytes("k0") < table.packed_bytes(f"k{MAX_INTERNED_TYPES + 5}")


def test_tables_compare_by_content_whatever_order_they_interned_types_in() -> None:
    a, b = RecordTable(), RecordTable()
    plain, png = (Record(b"v", t, {"n1": 1}, 1, "n1") for t in ("text/plain", "image/png"))
    a.put("x", plain)
    a.put("y", png)
    b.put("y", png)
    b.put("x", plain)
    assert a == b == {"x": plain, "y": png}
    b.put("x", png)
    assert a != b
    c = RecordTable()
    c.put("x", plain)
    c.put("y", png)
    assert a == c and c.put("y", plain) is False and a != c


def test_replace_stores_and_returns_the_version_it_replaced() -> None:
    table = RecordTable()
    first = Record(b"1", "text/plain", {"n1": 5}, 5, "n1")
    second = Record(b"2", "image/png", {"n1": 6}, 6, "n1", expires=9)
    assert table.replace("k", first) is None, "a new key"
    assert table.replace("k", second) == first
    assert table["k"] == second and len(table) == 1


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=12), records, max_size=20),
    st.dictionaries(st.text(max_size=12), records, max_size=20),
)
def test_put_new_packs_the_same_bytes_as_one_put_per_key(
    first: dict[str, Record], fresh: dict[str, Record]
) -> None:
    one, bulk = RecordTable(), RecordTable()
    for key, record in first.items():
        one.put(key, record)
        bulk.put(key, record)
    fresh = {key: record for key, record in fresh.items() if key not in first}
    for key, record in fresh.items():
        one.put(key, record)
    bulk.put_new(fresh)
    assert bulk._packed == one._packed  # interned types alike: byte for byte
    assert dict(bulk) == {**first, **fresh}


def test_every_put_stores_a_new_version_token_and_pop_leaves_none() -> None:
    table = RecordTable()
    record = Record(b"1", "text/plain", {"n1": 5}, 5, "n1")
    assert table.version_token("k") is None
    table.put("k", record)
    token = table.version_token("k")
    assert token is not None and table.version_token("k") is token, "stable between writes"
    table.put("k", record)  # an equal record, stored again: still a new version
    assert table.version_token("k") is not token
    replaced = table.version_token("k")
    table.replace("k", Record(b"2", "text/plain", {"n1": 6}, 6, "n1"))
    assert table.version_token("k") is not replaced
    table.pop("k")
    assert table.version_token("k") is None
