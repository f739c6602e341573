"""Settings: one pydantic-settings object, built from a mapping (the environment by default)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from limits import RateLimitItem
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.settings import AlertSettings, async_database_url
from api.faults.commands import load_fault_commands
from api.throttle import AuthLimits, parse_limits
from instrumentation.settings import SettingsError, TelemetrySettings
from instrumentation.settings import describe as describe_errors

__all__ = ["DEVELOPMENT_JWT_SECRET", "Mode", "Settings", "SettingsError"]

DEVELOPMENT_JWT_SECRET = "dynoscope-development-secret-do-not-use-in-production"  # noqa: S105
DEFAULT_DATABASE_URL = "sqlite:///./dynoscope.db"


LIMIT_VARIABLES = {
    "login_per_client": "AUTH_LOGIN_FAILURES_PER_CLIENT",
    "login_per_account_client": "AUTH_LOGIN_FAILURES_PER_ACCOUNT_CLIENT",
    "login_per_account": "AUTH_LOGIN_FAILURES_PER_ACCOUNT",
    "register_per_client": "AUTH_REGISTER_PER_CLIENT",
    "refresh_per_client": "AUTH_REFRESH_FAILURES_PER_CLIENT",
}


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


def normalise_database_url(url: str) -> str:
    """Map the usual URL forms onto the async drivers SQLAlchemy needs.

    >>> normalise_database_url("postgresql://app@db:5432/listings")
    'postgresql+asyncpg://app@db:5432/listings'
    >>> normalise_database_url("sqlite:///data/app.db")
    'sqlite+aiosqlite:///data/app.db'
    """
    return async_database_url(url, variable="DATABASE_URL")


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
    # A request finding every slot taken waits this long for one before it is shed (a small
    # share of the 200 ms latency target); 0 sheds at once, by count.
    admission_max_wait: float = Field(
        default=0.05, ge=0, le=5, validation_alias="ADMISSION_MAX_WAIT"
    )
    # At most this many wait at once; more are shed at once. Unset: MAX_IN_FLIGHT.
    admission_max_queue: int | None = Field(
        default=None, ge=0, validation_alias="ADMISSION_MAX_QUEUE"
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, validation_alias="MAX_BODY_BYTES")
    # Logins, registrations and refreshes in flight per worker: each hashes a password, so
    # they are admitted as a class of their own and a storm of them never crowds out reads.
    max_in_flight_auth: int = Field(default=4, gt=0, validation_alias="MAX_IN_FLIGHT_AUTH")
    # Addresses (or CIDR ranges) of proxies whose X-Forwarded-For is believed; none by default.
    trusted_proxies: str | None = Field(default=None, validation_alias="TRUSTED_PROXIES")
    # Rate limits on authentication (api/throttle.py, docs/security.md): "N/period;M/period".
    auth_rate_limits: bool = Field(default=True, validation_alias="AUTH_RATE_LIMITS")
    login_per_client: str = Field(
        default="20/minute", validation_alias="AUTH_LOGIN_FAILURES_PER_CLIENT"
    )
    login_per_account_client: str = Field(
        default="5/minute;20/hour", validation_alias="AUTH_LOGIN_FAILURES_PER_ACCOUNT_CLIENT"
    )
    login_per_account: str = Field(
        default="100/hour", validation_alias="AUTH_LOGIN_FAILURES_PER_ACCOUNT"
    )
    register_per_client: str = Field(default="20/hour", validation_alias="AUTH_REGISTER_PER_CLIENT")
    refresh_per_client: str = Field(
        default="20/minute", validation_alias="AUTH_REFRESH_FAILURES_PER_CLIENT"
    )
    # /docs, /redoc and /openapi.json: on outside production, off in it unless asked for.
    api_docs_enabled: bool | None = Field(default=None, validation_alias="API_DOCS_ENABLED")
    admin_token: SecretStr | None = Field(default=None, validation_alias="ADMIN_TOKEN")
    console_enabled: bool = Field(default=True, validation_alias="CONSOLE_ENABLED")
    # `dynoscope alerts run` serves the console here (beside METRICS_PORT) when set.
    console_port: int | None = Field(default=None, ge=1, le=65535, validation_alias="CONSOLE_PORT")
    # Fault injection (docs/faults.md): off by default, admin-only, opt-in twice in production.
    faults_enabled: bool = Field(default=False, validation_alias="DYNOSCOPE_FAULTS_ENABLED")
    faults_in_production: bool = Field(
        default=False, validation_alias="DYNOSCOPE_FAULTS_IN_PRODUCTION"
    )
    fault_commands: Path | None = Field(default=None, validation_alias="DYNOSCOPE_FAULT_COMMANDS")

    # Each package owns its settings; they read the same environment (see ``from_env``).
    telemetry: TelemetrySettings = Field(default_factory=lambda: TelemetrySettings.from_env({}))
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings.from_env({}))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from a mapping; tests pass a dict instead of patching os.environ.

        The service's own variables are read here; telemetry and alert variables by their
        packages' settings, composed in (the engine's store defaults to ``alerts.db`` beside
        the trace file).
        """
        source: Mapping[str, str] = os.environ if environ is None else environ
        telemetry = TelemetrySettings.from_env(source)
        store_dir = str(Path(telemetry.traces_file).parent)
        alerts = AlertSettings.from_env(source, store_dir=store_dir)
        data: dict[str, Any] = {k.upper(): v for k, v in source.items() if v != ""}
        try:
            return cls.model_validate({**data, "telemetry": telemetry, "alerts": alerts})
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc)) from None

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("fault_commands")
    @classmethod
    def _commands_file(cls, value: Path | None) -> Path | None:
        # Checked at start-up, so a bad file stops the service instead of a fault switch.
        if value is not None:
            load_fault_commands(value)
        return value

    @field_validator(*LIMIT_VARIABLES)
    @classmethod
    def _limits(cls, value: str, info: ValidationInfo) -> str:
        parse_limits(value, variable=LIMIT_VARIABLES[str(info.field_name)])
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str | None) -> str | None:
        for number, part in enumerate((value or "").split(","), start=1):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"TRUSTED_PROXIES: entry {number} is not an IP address or CIDR range"
                    ) from None
        return value

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
                ("METRICS_TOKEN", self.telemetry.metrics_token),
            ):
                if token is not None and len(token.get_secret_value()) < 24:
                    raise ValueError(f"{name}: must be at least 24 characters in production mode")
        return self

    @model_validator(mode="after")
    def _fault_policy(self) -> Settings:
        if not self.faults_enabled:
            return self
        if self.admin_token is None and self.mode is not Mode.DEVELOPMENT:
            # In development `dynoscope serve` makes a token for the run (dynoscope/session.py).
            raise ValueError("DYNOSCOPE_FAULTS_ENABLED: fault injection needs ADMIN_TOKEN")
        if self.mode is Mode.PRODUCTION and not self.faults_in_production:
            raise ValueError(
                "DYNOSCOPE_FAULTS_ENABLED: refused in production mode unless "
                "DYNOSCOPE_FAULTS_IN_PRODUCTION=true"
            )
        return self

    @property
    def signing_key(self) -> str:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return DEVELOPMENT_JWT_SECRET

    @property
    def auth_limits(self) -> AuthLimits:
        def parsed(field: str) -> tuple[RateLimitItem, ...]:
            return parse_limits(getattr(self, field), variable=LIMIT_VARIABLES[field])

        return AuthLimits(
            login_per_client=parsed("login_per_client"),
            login_per_account_client=parsed("login_per_account_client"),
            login_per_account=parsed("login_per_account"),
            register_per_client=parsed("register_per_client"),
            refresh_per_client=parsed("refresh_per_client"),
        )

    @property
    def proxies(self) -> list[str]:
        """``TRUSTED_PROXIES`` as a list (empty: no proxy is believed)."""
        return [part.strip() for part in (self.trusted_proxies or "").split(",") if part.strip()]

    @property
    def docs_enabled(self) -> bool:
        if self.api_docs_enabled is not None:
            return self.api_docs_enabled
        return self.mode is not Mode.PRODUCTION

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
