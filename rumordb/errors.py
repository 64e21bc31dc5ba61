"""What a node answered, as exceptions: one class per kind of failure, translated once.

Every error answer of a node is JSON ``{"error": code, "detail": text}``; ``error_from``
turns it into the exception for its status (the code and detail are kept on it), so a
caller catches ``NotFound`` or ``PreconditionFailed`` instead of comparing numbers. A node
that cannot be reached at all raises ``Unreachable``.

>>> from rumordb.errors import error_from
>>> error = error_from(412, b'{"error": "precondition_failed", "detail": "stale"}', {}, "n")
>>> type(error).__name__, error.code, error.detail
('PreconditionFailed', 'precondition_failed', 'stale')
"""

from __future__ import annotations

import json
from collections.abc import Mapping

DETAIL_MAX_CHARS = 500  # an error body is shown to people: never a whole page of HTML


class RumorError(Exception):
    """Base of every error the client raises."""


class InvalidKey(RumorError, ValueError):
    """A key the client will not send: empty, not a string, or not valid UTF-8."""


class Unreachable(RumorError):
    """No node answered (connection refused, timed out, reset), after every retry."""


class ResponseError(RumorError):
    """A node answered with an error status; ``code`` is the JSON ``error`` field."""

    status: int = 0

    def __init__(self, status: int, code: str, detail: str, node: str) -> None:
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.node = node


class BadRequest(ResponseError):
    """400: an invalid key, context, query or body."""


class Unauthorized(ResponseError):
    """401: a missing or unknown API key."""


class Forbidden(ResponseError):
    """403: the key's role may not do this (a reader key that writes)."""


class NotFound(ResponseError):
    """404: the key is absent or deleted (or the endpoint is not enabled)."""


class Exists(ResponseError):
    """409: ``create=True`` on a key that has a live value on that node."""


class PreconditionFailed(ResponseError):
    """412: ``if_match`` no longer names the node's current version."""


class PositionLost(ResponseError):
    """410: a watch cannot resume there (the node restarted, or the changes since are gone)."""


class TooLarge(ResponseError):
    """413 (value) or 414 (key): above the node's ``--max-value-bytes`` / ``--max-key-bytes``."""


class RateLimited(ResponseError):
    """429: slow down; ``retry_after_s`` is the node's ``Retry-After``, if it sent one."""

    def __init__(
        self, status: int, code: str, detail: str, node: str, retry_after_s: float | None
    ) -> None:
        super().__init__(status, code, detail, node)
        self.retry_after_s = retry_after_s


class Unavailable(RateLimited):
    """503: the node is starting, stopping, overloaded, or no owner of the key answered."""


class ServerError(ResponseError):
    """Any other 5xx: a bug on the node (it logged it)."""


_BY_STATUS: dict[int, type[ResponseError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Exists,
    410: PositionLost,
    412: PreconditionFailed,
    413: TooLarge,
    414: TooLarge,
}


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (the delta form; an HTTP date is ignored)."""
    text = headers.get("retry-after")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < 86_400 else None


def code_and_detail(body: bytes, status: int) -> tuple[str, str]:
    """The JSON error body's fields; a body that is not one still says something useful."""
    try:
        document = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return f"http_{status}", text[:DETAIL_MAX_CHARS]
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        detail = document.get("detail")
        return document["error"], "" if detail is None else str(detail)[:DETAIL_MAX_CHARS]
    return f"http_{status}", json.dumps(document)[:DETAIL_MAX_CHARS]


def error_from(status: int, body: bytes, headers: Mapping[str, str], node: str) -> ResponseError:
    """The exception for an error answer (``headers`` with lower-case names)."""
    code, detail = code_and_detail(body, status)
    if status == 429:
        return RateLimited(status, code, detail, node, retry_after_s(headers))
    if status == 503:
        return Unavailable(status, code, detail, node, retry_after_s(headers))
    if status >= 500:
        return ServerError(status, code, detail, node)
    kind = _BY_STATUS.get(status, BadRequest if status < 500 else ServerError)
    return kind(status, code, detail, node)
