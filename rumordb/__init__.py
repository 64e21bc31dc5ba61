"""RumorDB: a peer-to-peer, eventually consistent key-value store, and its Python client.

>>> from rumordb import Client
>>> db = Client(URLS, api_key=KEY)  # node URLs and an admin key
>>> db.put("greeting", "hello").key
'greeting'
>>> db.get("greeting").value
b'hello'
>>> db.close()

The client (``Client``, ``AsyncClient``, ``rumordb.errors``, ``rumordb.types``) is
imported on first use, so ``import rumordb`` stays cheap. The repository's top-level
folders are this package's subpackages (``rumordb/core`` and the others are links to
them), so one distribution installs one name:

* ``rumordb.core``: the sans-I/O protocol core;
* ``rumordb.live``: the live node (FastAPI, gossip, discovery, storage);
* ``rumordb.sim``: the SimPy simulator (its plotting libraries are the ``sim`` extra);
* ``rumordb.cli``: the ``rumor`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# name -> module that defines it; resolved by __getattr__ on first use (PEP 562).
_LAZY = {
    "Client": "rumordb.client",
    "AsyncClient": "rumordb.async_client",
    "Value": "rumordb.types",
    "Change": "rumordb.types",
    "PositionLost": "rumordb.errors",
    "Version": "rumordb.types",
    "Written": "rumordb.types",
    "Deleted": "rumordb.types",
    "KeyPage": "rumordb.types",
    "Op": "rumordb.types",
    "ItemResult": "rumordb.types",
    "Exported": "rumordb.types",
    "RumorError": "rumordb.errors",
    "ResponseError": "rumordb.errors",
    "Unreachable": "rumordb.errors",
    "InvalidKey": "rumordb.errors",
    "BadRequest": "rumordb.errors",
    "Unauthorized": "rumordb.errors",
    "Forbidden": "rumordb.errors",
    "NotFound": "rumordb.errors",
    "Exists": "rumordb.errors",
    "PreconditionFailed": "rumordb.errors",
    "TooLarge": "rumordb.errors",
    "RateLimited": "rumordb.errors",
    "Unavailable": "rumordb.errors",
    "ServerError": "rumordb.errors",
}

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Change",
    "Client",
    "Deleted",
    "Exists",
    "Exported",
    "Forbidden",
    "InvalidKey",
    "ItemResult",
    "KeyPage",
    "NotFound",
    "Op",
    "PositionLost",
    "PreconditionFailed",
    "RateLimited",
    "ResponseError",
    "RumorError",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "Value",
    "Version",
    "Written",
    "__version__",
]

if TYPE_CHECKING:
    from rumordb.async_client import AsyncClient
    from rumordb.client import Client
    from rumordb.errors import (
        BadRequest,
        Exists,
        Forbidden,
        InvalidKey,
        NotFound,
        PositionLost,
        PreconditionFailed,
        RateLimited,
        ResponseError,
        RumorError,
        ServerError,
        TooLarge,
        Unauthorized,
        Unavailable,
        Unreachable,
    )
    from rumordb.types import (
        Change,
        Deleted,
        Exported,
        ItemResult,
        KeyPage,
        Op,
        Value,
        Version,
        Written,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rumordb' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
