"""The core's error types: every bad input from outside maps to one of these."""

from __future__ import annotations


class RumorError(Exception):
    """Base class of every error the core raises on purpose."""


class DecodeError(RumorError):
    """A message or context that is malformed, oversized or of an unknown version."""


class InvalidKey(RumorError):
    """A key that is empty, too long or not valid UTF-8 text.

    ``too_long`` tells a key over the length limit (HTTP 414) from other bad keys (400).
    """

    def __init__(self, detail: str, *, too_long: bool = False) -> None:
        super().__init__(detail)
        self.too_long = too_long


class InvalidContext(RumorError):
    """An ``If-Match`` version context that does not decode."""
