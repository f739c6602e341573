"""Telemetry settings: what ``instrument_app`` reads, from a mapping (the environment).

The package owns these and nothing else: an app that uses ``instrumentation`` builds them
with ``TelemetrySettings.from_env(environ)`` (or composes them into settings of its own) and
passes them in; nothing here reads a global.

    >>> TelemetrySettings.from_env({"OTEL_TRACES_SAMPLER_ARG": "0.25"}).otel_traces_sampler_arg
    0.25
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

Model = TypeVar("Model", bound=BaseSettings)


class SettingsError(ValueError):
    """The configuration is unusable; the message names the variable, never its value."""


def settings_from(model: type[Model], environ: Mapping[str, str] | None = None) -> Model:
    """Validate ``model`` from a mapping of environment variables (empty values are unset).

    Errors name the variable and never echo its value: values hold secrets and passwords.
    """
    source: Mapping[str, str] = os.environ if environ is None else environ
    data: dict[str, Any] = {k.upper(): v for k, v in source.items() if v != ""}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """``VARIABLE: what is wrong`` for every error, values left out."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        where = ".".join(str(part) for part in error["loc"])
        problems.append(message if message.split(":")[0].isupper() else f"{where}: {message}")
    return "; ".join(problems)


class TelemetrySettings(BaseSettings):
    """Metrics, tracing and log correlation, from the standard ``OTEL_*`` variables and ours."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    instance_id: str | None = Field(default=None, validation_alias="INSTANCE_ID")
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        """Build from a mapping; tests pass a dict instead of patching ``os.environ``."""
        return settings_from(cls, environ)
