"""Settings: one pydantic-settings object, built from a mapping (the environment by default)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_JWT_SECRET = "dynoscope-development-secret-do-not-use-in-production"  # noqa: S105
DEFAULT_DATABASE_URL = "sqlite:///./dynoscope.db"


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


class SettingsError(ValueError):
    """The configuration is unusable; the message names the variable."""


def normalise_database_url(url: str) -> str:
    """Map the usual URL forms onto the async drivers SQLAlchemy needs.

    >>> normalise_database_url("postgresql://app@db:5432/listings")
    'postgresql+asyncpg://app@db:5432/listings'
    >>> normalise_database_url("sqlite:///data/app.db")
    'sqlite+aiosqlite:///data/app.db'
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("postgresql+psycopg://") or url.startswith("postgresql+psycopg2://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise SettingsError(
        f"DATABASE_URL: unsupported scheme in {url.split('://', 1)[0]!r}; "
        "use postgresql://user@host:port/db or sqlite:///path"
    )


class Settings(BaseSettings):
    """Everything the service reads from its environment.

    >>> Settings.from_env({"DATABASE_URL": "sqlite:///:memory:"}).mode
    <Mode.DEVELOPMENT: 'development'>
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    mode: Mode = Field(default=Mode.DEVELOPMENT, validation_alias="DYNOSCOPE_ENV")
    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    redis_key_prefix: str = Field(default="dynoscope:", validation_alias="REDIS_KEY_PREFIX")
    jwt_secret: SecretStr | None = Field(default=None, validation_alias="JWT_SECRET")
    access_token_ttl_seconds: int = Field(default=900, gt=0, validation_alias="ACCESS_TOKEN_TTL")
    refresh_token_ttl_seconds: int = Field(
        default=30 * 24 * 3600, gt=0, validation_alias="REFRESH_TOKEN_TTL"
    )
    cache_enabled: bool = Field(default=True, validation_alias="CACHE_ENABLED")
    cache_ttl_seconds: int = Field(default=300, gt=0, validation_alias="CACHE_TTL")
    cache_max_entries: int = Field(default=10_000, gt=0, validation_alias="CACHE_MAX_ENTRIES")
    redis_timeout_seconds: float = Field(default=0.5, gt=0, validation_alias="REDIS_TIMEOUT")
    redis_pool_size: int = Field(default=128, gt=0, validation_alias="REDIS_POOL_SIZE")
    redis_pool_timeout_seconds: float = Field(
        default=0.25, gt=0, validation_alias="REDIS_POOL_TIMEOUT"
    )
    readiness_timeout_seconds: float = Field(default=1.0, gt=0, validation_alias="READY_TIMEOUT")
    db_pool_size: int = Field(default=10, gt=0, validation_alias="DB_POOL_SIZE")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int = Field(default=8000, gt=0, lt=65536, validation_alias="PORT")
    max_in_flight: int = Field(default=128, gt=0, validation_alias="MAX_IN_FLIGHT")
    max_body_bytes: int = Field(default=1_048_576, gt=0, validation_alias="MAX_BODY_BYTES")
    admin_token: SecretStr | None = Field(default=None, validation_alias="ADMIN_TOKEN")

    # --- telemetry (instrumentation/, exporters/) ---
    instance_id: str | None = Field(default=None, validation_alias="INSTANCE_ID")
    metrics_enabled: bool = Field(default=True, validation_alias="DYNOSCOPE_METRICS_ENABLED")
    metrics_token: SecretStr | None = Field(default=None, validation_alias="METRICS_TOKEN")
    metrics_port: int | None = Field(default=None, gt=0, lt=65536, validation_alias="METRICS_PORT")
    prometheus_multiproc_dir: str | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )
    db_slow_query_seconds: float = Field(
        default=1.0, gt=0, validation_alias="DB_SLOW_QUERY_SECONDS"
    )
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otel_service_name: str = Field(default="dynoscope-api", validation_alias="OTEL_SERVICE_NAME")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_traces_sampler: str = Field(
        default="parentbased_traceidratio", validation_alias="OTEL_TRACES_SAMPLER"
    )
    otel_traces_sampler_arg: float = Field(
        default=0.1, ge=0, le=1, validation_alias="OTEL_TRACES_SAMPLER_ARG"
    )
    traces_file: str = Field(default="./var/traces.jsonl", validation_alias="DYNOSCOPE_TRACES_FILE")

    # --- alerts (alerts/) ---
    alert_rules_path: str | None = Field(default=None, validation_alias="ALERT_RULES_PATH")
    alert_webhook_url: SecretStr | None = Field(default=None, validation_alias="ALERT_WEBHOOK_URL")
    prometheus_url: str | None = Field(default=None, validation_alias="PROMETHEUS_URL")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from a mapping; tests pass a dict instead of patching os.environ."""
        source: Mapping[str, str] = os.environ if environ is None else environ
        data: dict[str, Any] = {k.upper(): v for k, v in source.items() if v != ""}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            # Never echo the input: it holds secrets and database passwords.
            problems = []
            for error in exc.errors(include_input=False, include_url=False):
                message = str(error["msg"]).removeprefix("Value error, ")
                where = ".".join(str(part) for part in error["loc"])
                problems.append(
                    message if message.split(":")[0].isupper() else f"{where}: {message}"
                )
            raise SettingsError("; ".join(problems)) from None

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("mode", mode="before")
    @classmethod
    def _lower_mode(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _secret_policy(self) -> Settings:
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret else None
        if self.mode is Mode.PRODUCTION:
            if not secret or secret == DEVELOPMENT_JWT_SECRET:
                raise ValueError(
                    "JWT_SECRET: production mode refuses to start without a secret of its own"
                )
            if len(secret) < 32:
                raise ValueError("JWT_SECRET: must be at least 32 characters in production mode")
            for name, token in (
                ("ADMIN_TOKEN", self.admin_token),
                ("METRICS_TOKEN", self.metrics_token),
            ):
                if token is not None and len(token.get_secret_value()) < 24:
                    raise ValueError(f"{name}: must be at least 24 characters in production mode")
        return self

    @property
    def signing_key(self) -> str:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return DEVELOPMENT_JWT_SECRET

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: in-process cache and broadcaster."""
        return self.redis_url is None

    def describe(self) -> str:
        """One line for the start-up log: which database, cache and mode, no secrets."""
        database = "sqlite" if self.is_sqlite else "postgresql"
        cache = "redis" if self.redis_url else "in-process (not production-safe)"
        return f"database={database} cache={cache} mode={self.mode.value}"
