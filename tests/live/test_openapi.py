"""The schema tells the truth (statuses, bounds, JSON errors); /docs and /redoc work offline."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rumordb.live.kv import MAX_LIMIT
from tests.live.harness import running_app, settings_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_for(tmp_path, max_key_bytes=400, allow_faults=True)) as (
        _,
        http,
    ):
        yield http


async def test_every_operation_lists_the_edge_answers_as_json_errors(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["schemas"]["Error"]["required"] == ["error", "detail"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in ("408", "431", "503"):
                assert status in operation["responses"], (path, method, status)
            if method != "head":
                content = operation["responses"]["431"]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}


async def test_kv_statuses_and_bounds(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    kv = paths["/kv/{key}"]
    assert {"400", "401", "403", "409", "412", "413", "414", "429"} <= set(kv["post"]["responses"])
    assert {"404", "412", "403"} <= set(kv["delete"]["responses"])
    assert {"200", "404", "414"} <= set(kv["head"]["responses"])
    key = next(p for p in kv["get"]["parameters"] if p["name"] == "key")
    assert key["schema"]["maxLength"] == 100  # 400 bytes, at most 4 per character
    listing = paths["/kv"]["get"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, MAX_LIMIT)
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert [shape["required"] for shape in page["oneOf"]] == [["keys", "next"], ["items", "next"]]
    batch = paths["/kv"]["post"]["responses"]
    assert {"200", "400", "403", "413"} <= set(batch)
    assert "Retry-After" in kv["put"]["responses"]["429"]["headers"]
    assert {"400", "401", "429"} <= set(paths["/cluster"]["get"]["responses"])
    assert {"403", "413"} <= set(paths["/faults"]["post"]["responses"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_reference_only_local_assets_and_they_are_served(
    client: httpx.AsyncClient, page: str
) -> None:
    html = (await client.get(page)).text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""url:\s*'([^']+)'""", html)
    assert urls, html
    for url in urls:
        assert not re.match(r"^(https?:)?//", url), f"{page} loads {url} from outside"
        if url.startswith("/docs-assets/"):
            answer = await client.get(url)
            assert answer.status_code == 200 and len(answer.content) > 1000, url
    assert any(u.endswith(".js") for u in urls)


async def test_a_missing_asset_is_a_json_404(client: httpx.AsyncClient) -> None:
    answer = await client.get("/docs-assets/nope.js")
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
