"""Account helpers for tests that need a logged-in user."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

PASSWORD = "correct-horse-battery"


async def register_and_login(client: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    response = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    response = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    tokens["email"] = email
    tokens["headers"] = {"Authorization": f"Bearer {tokens['access_token']}"}
    return tokens


def listing(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Bright flat",
        "description": "Near the park.",
        "city": "Berlin",
        "address": "1 Main St",
        "price": 250000,
        "bedrooms": 2,
        "bathrooms": 1,
        "area_sqft": 800,
    }
    body.update(overrides)
    return body
