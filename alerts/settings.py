"""Settings of the alert engine, from a mapping (the environment); the engine owns these.

>>> AlertSettings.from_env({"ALERT_STORE_URL": "postgresql://alerts@db/alerts"}).store_url
'postgresql+asyncpg://alerts@db/alerts'
>>> AlertSettings.from_env({}, store_dir="/srv/var").store_url
'sqlite+aiosqlite:////srv/var/alerts.db'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from instrumentation.settings import settings_from

if TYPE_CHECKING:
    from alerts.delivery.receivers import Receivers


def async_database_url(url: str, *, variable: str) -> str:
    """Map the usual URL forms onto the async drivers SQLAlchemy needs.

    >>> async_database_url("postgres://app@db:5432/listings", variable="DATABASE_URL")
    'postgresql+asyncpg://app@db:5432/listings'
    >>> async_database_url("sqlite:///data/app.db", variable="DATABASE_URL")
    'sqlite+aiosqlite:///data/app.db'
    """
    for prefix in (
        "postgresql://",
        "postgres://",
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ValueError(
        f"{variable}: unsupported scheme in {url.split('://', 1)[0]!r}; "
        "use postgresql://user@host:port/db or sqlite:///path"
    )


class AlertSettings(BaseSettings):
    """Rules, the metric source, the engine's own store and its receivers."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    rules_path: str | None = Field(default=None, validation_alias="ALERT_RULES_PATH")
    # OpenSLO files of the objectives (paths separated by ":"); unset: the shipped ones.
    slo_path: str | None = Field(default=None, validation_alias="ALERT_SLO_PATH")
    prometheus_url: str | None = Field(default=None, validation_alias="PROMETHEUS_URL")
    store_url: str = Field(default="sqlite:///./var/alerts.db", validation_alias="ALERT_STORE_URL")
    store_timeout_seconds: float = Field(default=2.0, gt=0, validation_alias="ALERT_STORE_TIMEOUT")
    webhook_url: SecretStr | None = Field(default=None, validation_alias="ALERT_WEBHOOK_URL")
    # Of several engines on one store the one holding this lease leads; a standby takes over
    # within about 4/3 of it after the leader dies. Keep it under two evaluation intervals.
    # 0: one engine per store and no lease, so a store outage never silences it (no standby).
    lease_seconds: float = Field(default=10.0, ge=0, validation_alias="ALERT_LEASE_SECONDS")
    # The other engines' base URLs (comma-separated), asked before acting without the store.
    peers: str | None = Field(default=None, validation_alias="ALERT_PEERS")
    # Peers answer behind the metrics port's token, and send it when they ask.
    metrics_token: SecretStr | None = Field(default=None, validation_alias="METRICS_TOKEN")
    # A notification is retried until it is this old, then given up (logged and counted).
    delivery_max_age_seconds: float = Field(
        default=3600.0, gt=0, validation_alias="ALERT_DELIVERY_MAX_AGE"
    )
    # A dashboard link per alert, e.g. https://grafana/d/scaling?var-route={{ labels.route }}
    grafana_url_template: str | None = Field(
        default=None, validation_alias="ALERT_GRAFANA_URL_TEMPLATE"
    )
    # A trace-UI link per example trace id, e.g. http://jaeger:16686/trace/{{ trace_id }}
    trace_url_template: str | None = Field(
        default=None, validation_alias="ALERT_TRACE_URL_TEMPLATE"
    )
    # Relative ``runbook_url`` annotations (the shipped rules') are resolved against this.
    runbook_base_url: str | None = Field(default=None, validation_alias="ALERT_RUNBOOK_BASE_URL")
    # Seconds the example traces and slowest statements of a firing alert may take to find;
    # a notification waits at most this long for them, then goes without. 0: no lookup.
    context_timeout_seconds: float = Field(
        default=2.0, ge=0, le=30, validation_alias="ALERT_CONTEXT_TIMEOUT"
    )
    receivers_path: str | None = Field(default=None, validation_alias="ALERT_RECEIVERS_PATH")
    # The variables a receivers file's ``*_env`` fields name are read from the same mapping
    # the settings came from; kept private, so never part of a repr or a dump.
    _environ: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, store_dir: str | None = None
    ) -> AlertSettings:
        """Build from a mapping; without ``ALERT_STORE_URL`` the store is ``alerts.db`` in
        ``store_dir`` (the service puts it beside its trace file)."""
        settings = settings_from(cls, environ)
        settings._environ = dict(os.environ if environ is None else environ)
        if store_dir is not None and "store_url" not in settings.model_fields_set:
            url = f"sqlite:///{Path(store_dir) / 'alerts.db'}"
            environ_copy = settings._environ
            settings = settings.model_copy(update={"store_url": cls._store(url)})
            settings._environ = environ_copy
        return settings

    def receivers(self) -> Receivers:
        """Receivers and routing: ``ALERT_RECEIVERS_PATH`` plus the ``ALERT_WEBHOOK_URL``
        shorthand; raises ``ReceiverFileError`` naming file, receiver and field."""
        from alerts.delivery.receivers import load_receivers

        return load_receivers(
            self.receivers_path, environ=self._environ, webhook_url=self.webhook_url
        )

    @field_validator("store_url")
    @classmethod
    def _store(cls, value: str) -> str:
        return async_database_url(value, variable="ALERT_STORE_URL")

    @property
    def peer_urls(self) -> tuple[str, ...]:
        """``ALERT_PEERS`` as a list of base URLs."""
        return tuple(part.strip() for part in (self.peers or "").split(",") if part.strip())

    @field_validator("peers")
    @classmethod
    def _peers(cls, value: str | None) -> str | None:
        for number, part in enumerate((value or "").split(","), start=1):
            url = part.strip()
            if url and not url.startswith(("http://", "https://")):
                # Not echoed: a URL may carry credentials.
                raise ValueError(f"ALERT_PEERS: entry {number} is not an absolute http(s) URL")
        return value

    @field_validator("grafana_url_template")
    @classmethod
    def _grafana(cls, value: str | None) -> str | None:
        if value is not None:
            from alerts.rules.template import check

            check(value, label_names=None)  # ValueError names the template
        return value

    @field_validator("trace_url_template")
    @classmethod
    def _trace(cls, value: str | None) -> str | None:
        if value is not None:
            from alerts.rules.template import check

            check(value, label_names=None)  # ValueError names the template
            if "trace_id" not in value:
                raise ValueError("ALERT_TRACE_URL_TEMPLATE: must use {{ trace_id }}")
        return value

    @field_validator("runbook_base_url")
    @classmethod
    def _runbook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("ALERT_RUNBOOK_BASE_URL: must be an absolute http(s) URL")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked at start, not at the first alert: a typo found during an outage is too late.
        # The message never repeats the URL, which carries a token.
        if value is None:
            return None
        try:
            url = httpx.URL(value.get_secret_value())
        except (httpx.InvalidURL, TypeError, ValueError):
            raise ValueError("ALERT_WEBHOOK_URL: not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("ALERT_WEBHOOK_URL: must be an absolute http:// or https:// URL")
        return value
