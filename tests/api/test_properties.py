from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.stack import Running
from tests.support.users import listing, register_and_login


async def _create(api: Running, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = await api.client.post("/properties", json=listing(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_read_update_delete(api: Running) -> None:
    owner = await register_and_login(api.client)
    created = await _create(api, owner["headers"], price=310000.5)
    assert created["status"] == "available"
    assert created["price"] == 310000.5
    assert created["created_at"].endswith("Z") or "+00:00" in created["created_at"]

    fetched = await api.client.get(f"/properties/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created

    patched = await api.client.patch(
        f"/properties/{created['id']}", json={"status": "pending"}, headers=owner["headers"]
    )
    assert patched.status_code == 200
    assert patched.json()["status"] == "pending"
    assert patched.json()["title"] == created["title"]

    deleted = await api.client.delete(f"/properties/{created['id']}", headers=owner["headers"])
    assert deleted.status_code == 204
    gone = await api.client.get(f"/properties/{created['id']}")
    assert gone.status_code == 404
    assert gone.json() == {"error": "not_found", "detail": f"property {created['id']} not found"}


async def test_only_the_owner_may_change_or_delete(api: Running) -> None:
    owner = await register_and_login(api.client)
    other = await register_and_login(api.client)
    created = await _create(api, owner["headers"])
    url = f"/properties/{created['id']}"
    patch = await api.client.patch(url, json={"price": 1}, headers=other["headers"])
    delete = await api.client.delete(url, headers=other["headers"])
    assert patch.status_code == delete.status_code == 403
    assert patch.json()["error"] == "forbidden"
    assert (await api.client.get(url)).json()["price"] == created["price"]


async def test_list_filters_and_stable_order(api: Running) -> None:
    owner = await register_and_login(api.client)
    made = [
        await _create(api, owner["headers"], city="Berlin", price=100000, bedrooms=1),
        await _create(api, owner["headers"], city="Lisbon", price=200000, bedrooms=2),
        await _create(api, owner["headers"], city="berlin", price=300000, bedrooms=2),
        await _create(
            api, owner["headers"], city="Berlin", price=400000, bedrooms=3, status="sold"
        ),
    ]
    ids = [m["id"] for m in made]

    async def ids_for(query: str) -> list[int]:
        response = await api.client.get(f"/properties?{query}")
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids_for("") == ids
    assert await ids_for("city=BERLIN") == [ids[0], ids[2], ids[3]]
    assert await ids_for("min_price=150000&max_price=300000") == [ids[1], ids[2]]
    assert await ids_for("bedrooms=2") == [ids[1], ids[2]]
    assert await ids_for("status=sold") == [ids[3]]
    assert await ids_for("city=berlin&bedrooms=2") == [ids[2]]
    assert await ids_for("limit=2") == ids[:2]
    assert await ids_for("limit=2&offset=2") == ids[2:]
    assert await ids_for("offset=10") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=100000", "query.limit"),
        ("limit=0", "query.limit"),
        ("offset=-1", "query.offset"),
        ("min_price=-5", "query.min_price"),
        ("min_price=abc", "query.min_price"),
        ("status=demolished", "query.status"),
        ("unknown=1", "query.unknown"),
        ("min_price=10&max_price=5", "query"),
        ("city=" + "x" * 101, "query.city"),
    ],
)
async def test_bad_list_queries_are_422_naming_the_field(
    api: Running, query: str, field: str
) -> None:
    response = await api.client.get(f"/properties?{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert any(error["field"] == field for error in body["errors"]), body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": -1}, "body.price"),
        ({"title": "x" * 201}, "body.title"),
        ({"description": "x" * 5001}, "body.description"),
        ({"bedrooms": 1.5}, "body.bedrooms"),
        ({"status": "demolished"}, "body.status"),
        ({"owner_id": 99}, "body.owner_id"),
        ({"price": "1e400"}, "body.price"),
    ],
)
async def test_bad_property_bodies_are_422_naming_the_field(
    api: Running, body: dict[str, Any], field: str
) -> None:
    owner = await register_and_login(api.client)
    response = await api.client.post("/properties", json=listing(**body), headers=owner["headers"])
    assert response.status_code == 422, response.text
    assert any(error["field"] == field for error in response.json()["errors"])


async def test_malformed_json_and_empty_patch(api: Running) -> None:
    owner = await register_and_login(api.client)
    headers = {**owner["headers"], "Content-Type": "application/json"}
    broken = await api.client.post("/properties", content=b'{"title": ', headers=headers)
    assert broken.status_code == 422
    assert broken.json()["detail"] == "body: malformed JSON body"

    created = await _create(api, owner["headers"])
    url = f"/properties/{created['id']}"
    empty = await api.client.patch(url, json={}, headers=owner["headers"])
    assert empty.status_code == 422
    nulled = await api.client.patch(url, json={"title": None}, headers=owner["headers"])
    assert nulled.status_code == 422
    assert "title" in nulled.json()["detail"]


@pytest.mark.parametrize("path", ["/properties/0", "/properties/abc", "/properties/99999999999"])
async def test_bad_ids_are_422(api: Running, path: str) -> None:
    response = await api.client.get(path)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "path.property_id"


async def test_missing_property_is_404_for_every_verb(api: Running) -> None:
    owner = await register_and_login(api.client)
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.client.request(
            method,
            "/properties/424242",
            json={"price": 1} if method == "PATCH" else None,
            headers=owner["headers"],
        )
        assert response.status_code == 404, method


async def test_unknown_route_and_method_are_json(api: Running) -> None:
    missing = await api.client.get("/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await api.client.put("/properties")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


async def test_oversized_bodies_are_413_declared_or_streamed(api: Running) -> None:
    owner = await register_and_login(api.client)
    huge = b'{"title": "' + b"x" * 2_000_000 + b'"}'
    headers = {**owner["headers"], "Content-Type": "application/json"}
    declared = await api.client.post("/properties", content=huge, headers=headers)
    assert declared.status_code == 413
    assert declared.json()["error"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    streamed = await api.client.post("/properties", content=chunks(), headers=headers)
    assert streamed.status_code == 413
