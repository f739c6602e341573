from __future__ import annotations

import pytest

from api.settings import DEVELOPMENT_JWT_SECRET, Mode, Settings, SettingsError


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://app@db:5432/listings", "postgresql+asyncpg://app@db:5432/listings"),
        ("postgres://app:pw@db/listings", "postgresql+asyncpg://app:pw@db/listings"),
        ("postgresql+asyncpg://app@db/x", "postgresql+asyncpg://app@db/x"),
        ("sqlite:///data/app.db", "sqlite+aiosqlite:///data/app.db"),
        ("sqlite:////abs/app.db", "sqlite+aiosqlite:////abs/app.db"),
    ],
)
def test_database_url_forms(given: str, expected: str) -> None:
    assert Settings.from_env({"DATABASE_URL": given}).database_url == expected


def test_defaults_are_the_embedded_development_stack() -> None:
    settings = Settings.from_env({})
    assert settings.mode is Mode.DEVELOPMENT
    assert settings.is_sqlite and settings.embedded
    assert settings.cache_ttl_seconds == 300
    assert settings.signing_key == DEVELOPMENT_JWT_SECRET
    assert settings.describe() == (
        "database=sqlite cache=in-process (not production-safe) mode=development"
    )


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "JWT_SECRET: production mode refuses to start without a secret of its own"),
        (DEVELOPMENT_JWT_SECRET, "JWT_SECRET: production mode refuses to start"),
        ("too-short", "JWT_SECRET: must be at least 32 characters"),
    ],
)
def test_production_refuses_a_missing_or_default_secret(secret: str | None, message: str) -> None:
    environ = {"DYNOSCOPE_ENV": "production"}
    if secret is not None:
        environ["JWT_SECRET"] = secret
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_production_accepts_its_own_secret() -> None:
    settings = Settings.from_env({"DYNOSCOPE_ENV": "PRODUCTION", "JWT_SECRET": "s" * 40})
    assert settings.mode is Mode.PRODUCTION
    assert settings.signing_key == "s" * 40


def test_errors_name_the_variable_and_never_echo_secrets() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"PORT": "eighty", "DATABASE_URL": "postgresql://u:hunter2@h/db", "JWT_SECRET": "tok3n"}
        )
    text = str(caught.value)
    assert text.startswith("PORT:")
    assert "hunter2" not in text and "tok3n" not in text


def test_unsupported_database_is_named() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL: unsupported scheme in 'mysql'"):
        Settings.from_env({"DATABASE_URL": "mysql://x@y/z"})


@pytest.mark.parametrize("name", ["ADMIN_TOKEN", "METRICS_TOKEN"])
def test_production_refuses_guessable_admin_and_metrics_tokens(name: str) -> None:
    environ = {"DYNOSCOPE_ENV": "production", "JWT_SECRET": "s" * 40, name: "admin"}
    with pytest.raises(SettingsError, match=f"{name}: must be at least 24 characters"):
        Settings.from_env(environ)
    assert Settings.from_env({**environ, "DYNOSCOPE_ENV": "development"}) is not None
