"""Requests and answers as data: key encoding, error mapping, result parsing."""

from __future__ import annotations

import pytest

from rumordb import api, errors
from rumordb.api import Response


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("plain", "/kv/plain"),
        ("a/b c?d#e", "/kv/a%2Fb%20c%3Fd%23e"),
        ("100%", "/kv/100%25"),
        ("ключ", "/kv/%D0%BA%D0%BB%D1%8E%D1%87"),
        (".", "/kv/%2E"),
        ("..", "/kv/%2E%2E"),
        ("...", "/kv/..."),
    ],
)
def test_keys_are_percent_encoded_whole(key: str, path: str) -> None:
    assert api.key_path(key) == path


@pytest.mark.parametrize("key", ["", "\ud800"])
def test_keys_the_client_will_not_send(key: str) -> None:
    with pytest.raises(errors.InvalidKey):
        api.key_path(key)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "invalid_key", errors.BadRequest),
        (401, "unauthorized", errors.Unauthorized),
        (403, "forbidden", errors.Forbidden),
        (404, "not_found", errors.NotFound),
        (409, "exists", errors.Exists),
        (412, "precondition_failed", errors.PreconditionFailed),
        (413, "value_too_large", errors.TooLarge),
        (414, "key_too_long", errors.TooLarge),
        (429, "rate_limited", errors.RateLimited),
        (503, "overloaded", errors.Unavailable),
        (500, "internal_error", errors.ServerError),
    ],
)
def test_error_answers_become_their_exception(
    status: int, code: str, kind: type[errors.ResponseError]
) -> None:
    body = f'{{"error": "{code}", "detail": "why"}}'.encode()
    error = errors.error_from(status, body, {"retry-after": "2"}, "http://n")
    assert type(error) is kind
    assert (error.status, error.code, error.detail, error.node) == (status, code, "why", "http://n")
    if isinstance(error, errors.RateLimited):
        assert error.retry_after_s == 2.0


def test_an_error_body_that_is_not_json_still_reads() -> None:
    error = errors.error_from(502, b"<html>bad gateway</html>", {}, "n")
    assert isinstance(error, errors.ServerError)
    assert error.code == "http_502" and "bad gateway" in error.detail


def test_writes_are_not_idempotent_reads_are() -> None:
    assert api.get("k").idempotent and api.list_keys().idempotent
    assert not api.put("k", "v").idempotent and not api.delete("k").idempotent


def test_values_and_conditions_are_encoded() -> None:
    text = api.put("k", "héllo", if_match="ctx")
    assert text.body == "héllo".encode() and dict(text.headers)["If-Match"] == '"ctx"'
    assert dict(text.headers)["Content-Type"].startswith("text/plain")
    raw = api.put("k", b"\x00", create=True)
    assert raw.method == "POST" and dict(raw.headers)["Content-Type"] == api.BYTES_TYPE
    with pytest.raises(ValueError, match="limit"):
        api.list_keys(limit=1001)


def test_a_value_answer_is_parsed_with_its_context() -> None:
    headers = {"content-type": "text/plain", "x-rumor-context": "abc", "etag": '"abc"'}
    value = api.value("k", Response(200, headers, b"v", "n"))
    assert (value.value, value.content_type, value.context, value.node) == (
        b"v",
        "text/plain",
        "abc",
        "n",
    )
    with pytest.raises(errors.NotFound):
        api.value("k", Response(404, {}, b'{"error": "not_found", "detail": ""}', "n"))


def test_chunks_respect_the_item_and_size_limits() -> None:
    from rumordb.types import Op

    ops = [Op.put(f"k{i}", b"x" * 100) for i in range(2500)]
    sizes = [len(chunk) for chunk in api.chunks(ops)]
    assert sizes == [1000, 1000, 500]
    big = [Op.put(f"k{i}", b"x" * 600_000) for i in range(7)]
    assert [len(c) for c in api.chunks(big, max_bytes=2 * 1024 * 1024)] == [3, 3, 1]


def test_a_batch_is_resent_only_when_every_item_is_idempotent() -> None:
    import msgspec

    from rumordb.types import Op

    version = {"clock": {"n1": 5}, "hlc": 5, "origin": "n1"}
    safe = api.batch([Op.put("a", "1", if_changed=True), Op.delete("b", version=version)])
    assert safe.idempotent and safe.method == "POST" and safe.target == "/kv"
    items = msgspec.msgpack.decode(safe.body)["items"]
    assert items[0] == {"op": "put", "key": "a", "value": b"1",
                        "content_type": "text/plain; charset=utf-8", "if_changed": True}  # fmt: skip
    assert not api.batch([Op.put("a", "1")]).idempotent
    with pytest.raises(ValueError):
        api.batch([Op("move", "a")])
    with pytest.raises(ValueError):
        api.batch([Op.put("a", "1")] * 1001)
