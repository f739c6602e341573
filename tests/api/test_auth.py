from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt

from tests.support.stack import Running
from tests.support.users import PASSWORD, listing, register_and_login


async def test_register_then_login_returns_a_token_pair(api: Running) -> None:
    tokens = await register_and_login(api.client)
    assert tokens["token_type"] == "bearer"
    assert tokens["access_token"] != tokens["refresh_token"]
    response = await api.client.post("/properties", json=listing(), headers=tokens["headers"])
    assert response.status_code == 201


async def test_register_twice_is_a_conflict(api: Running) -> None:
    body = {"email": "Dup@Example.com", "password": PASSWORD}
    assert (await api.client.post("/auth/register", json=body)).status_code == 201
    body["email"] = "dup@example.com"
    response = await api.client.post("/auth/register", json=body)
    assert response.status_code == 409
    assert response.json() == {"error": "conflict", "detail": "email already registered"}


async def test_wrong_password_and_unknown_user_look_the_same(api: Running) -> None:
    tokens = await register_and_login(api.client)
    wrong = await api.client.post(
        "/auth/login", json={"email": tokens["email"], "password": "not-the-password"}
    )
    unknown = await api.client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "unauthorized",
            "detail": "invalid email or password",
        }
    )


async def test_refresh_rotates_and_the_old_token_stops_working(api: Running) -> None:
    tokens = await register_and_login(api.client)
    first = await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]

    replay = await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert "reused" in replay.json()["detail"]

    # Reuse revoked the whole family: the token the legitimate client holds is dead too.
    after = await api.client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert after.status_code == 401
    assert after.json()["detail"] == "refresh token revoked"


async def test_refresh_chain_keeps_working_without_reuse(api: Running) -> None:
    tokens = await register_and_login(api.client)
    current = tokens["refresh_token"]
    for _ in range(3):
        response = await api.client.post("/auth/refresh", json={"refresh_token": current})
        assert response.status_code == 200
        current = response.json()["refresh_token"]


async def test_logout_revokes_the_session(api: Running) -> None:
    tokens = await register_and_login(api.client)
    response = await api.client.post(
        "/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    again = await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401


async def test_unknown_refresh_token_is_rejected(api: Running) -> None:
    response = await api.client.post("/auth/refresh", json={"refresh_token": "made-up"})
    assert response.status_code == 401


async def test_tampered_and_expired_access_tokens_are_401(api: Running) -> None:
    tokens = await register_and_login(api.client)
    header, payload, signature = tokens["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims_sid = claims["sid"]
    claims["sub"] = str(int(claims["sub"]) + 1)  # claim to be somebody else
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{forged_payload}.{signature}"
    secret = api.services.settings.signing_key
    now = datetime.now(UTC)
    expired = jwt.encode(
        {
            "sub": "1",
            "sid": claims_sid,
            "typ": "access",
            "iat": now - timedelta(hours=2),
            "exp": now - timedelta(hours=1),
        },
        secret,
        algorithm="HS256",
    )
    forged = jwt.encode(
        {
            "sub": "1",
            "sid": claims_sid,
            "typ": "access",
            "iat": now,
            "exp": now + timedelta(hours=1),
        },
        "another-secret-of-sufficient-length-0123456789",
        algorithm="HS256",
    )
    unsigned = jwt.encode(
        {
            "sub": "1",
            "sid": claims_sid,
            "typ": "access",
            "iat": now,
            "exp": now + timedelta(hours=1),
        },
        None,
        algorithm="none",
    )
    for token, detail in [
        (tampered, "access token invalid"),
        (expired, "access token expired"),
        (forged, "access token invalid"),
        (unsigned, "access token invalid"),
        ("not-a-jwt", "access token invalid"),
    ]:
        response = await api.client.post(
            "/properties", json=listing(), headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, token
        assert response.json() == {"error": "unauthorized", "detail": detail}
        assert response.headers["www-authenticate"] == "Bearer"


async def test_missing_token_is_401(api: Running) -> None:
    response = await api.client.post("/properties", json=listing())
    assert response.status_code == 401
    assert response.json()["detail"] == "missing bearer token"


async def test_bad_credentials_bodies_are_422_without_echoing_the_password(api: Running) -> None:
    cases = [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@example.com", "password": "zq7xw"},
        {"email": "a@example.com", "password": PASSWORD, "admin": True},
        {"email": "a@example.com"},
    ]
    for body in cases:
        response = await api.client.post("/auth/register", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"] == "validation_error"
        assert PASSWORD not in response.text
        assert "zq7xw" not in response.text


async def test_passwords_are_stored_hashed_with_argon2id(api: Running) -> None:
    from sqlalchemy import select

    from api.models import RefreshToken, User

    tokens = await register_and_login(api.client)
    async with api.services.sessions() as session:
        user = await session.scalar(select(User).where(User.email == tokens["email"]))
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        stored = (await session.scalars(select(RefreshToken.token_hash))).all()
    assert tokens["refresh_token"] not in stored
    assert len(stored) == 1 and len(stored[0]) == 64
