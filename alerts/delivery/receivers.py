"""Receivers and routing, from a YAML file (``ALERT_RECEIVERS_PATH``).

```yaml
receivers:
  - name: oncall-slack
    type: slack
    url_env: SLACK_WEBHOOK_URL          # secrets by reference: never inline, never logged
  - name: pager
    type: pagerduty
    routing_key_env: PAGERDUTY_ROUTING_KEY
  - name: am
    type: alertmanager
    url: http://alertmanager:9093
route:
  receivers: [oncall-slack]             # the default, for alerts no route matches
  routes:
    - match: {severity: page}           # equality on labels
      receivers: [pager, oncall-slack]
    - match_re: {route: "/admin.*"}     # a full-match regular expression
      receivers: [am]
      continue: true                    # keep looking at later routes too
  repeat_interval: 4h                   # remind while still firing (per route too); unset: never
  group_by: [alertname]                 # one message per group (per route too); [...]: per alert
  group_wait: 30s                       # a new group's first message waits to collect others
  group_interval: 5m                    # later changes to a group at most this often
```

Each receiver type's typed configuration lives beside its notifier (``alerts.delivery.notifiers``);
any field may instead be given as ``<field>_env``, the name of an environment variable.
Routes are tried in order; the first that matches decides unless it says ``continue``. The
console receiver always gets every notification (a log line per alert), grouped like the
first matching route. ``ALERT_WEBHOOK_URL`` remains a shorthand: a ``webhook`` receiver added
to the default route. Without a receivers file nothing is grouped: each alert is sent at once
on its own, as before grouping existed (``GroupSettings.ungrouped``).

Grouping (``alerts.delivery.grouping``) follows Alertmanager: the defaults are ``group_by:
[alertname]``, ``group_wait: 30s``, ``group_interval: 5m``; a route's own values override the
tree's. An ``alertmanager`` receiver is never grouped here: Alertmanager groups by itself.

Every mistake is a ``ReceiverFileError`` naming file, receiver and field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from alerts.delivery.grouping import EVERY_LABEL, GroupSettings
from alerts.delivery.inhibition import InhibitRule
from alerts.delivery.notifiers import ConsoleNotifier, Notifier, WebhookConfig, WebhookNotifier
from alerts.delivery.notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from alerts.delivery.notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier
from alerts.delivery.notifiers.slack import SlackConfig, SlackNotifier
from alerts.delivery.routing import CONSOLE, Route, Router
from alerts.errors import ReceiverFileError
from alerts.rules.rule import Duration
from alerts.silences.matchers import Matcher, parse_matcher

ReceiverConfig = Annotated[
    WebhookConfig | SlackConfig | PagerDutyConfig | AlertmanagerConfig,
    Field(discriminator="type"),
]
_configs: TypeAdapter[ReceiverConfig] = TypeAdapter(ReceiverConfig)


@dataclass(frozen=True)
class Receivers:
    """Configured receivers by name, and the router between them."""

    configs: Mapping[str, BaseModel] = field(default_factory=dict)
    router: Router = field(default_factory=Router)
    inhibit_rules: tuple[InhibitRule, ...] | None = None
    """The file's ``inhibit_rules`` (``[]``: none); ``None``: the shipped defaults."""

    def notifiers(self, *, client: httpx.AsyncClient) -> dict[str, Notifier]:
        """One notifier per receiver (the console included), sharing ``client``."""
        built: dict[str, Notifier] = {CONSOLE: ConsoleNotifier()}
        for name, config in self.configs.items():
            built[name] = notifier_for(config, client=client)
        return built


def notifier_for(config: BaseModel, *, client: httpx.AsyncClient) -> Notifier:
    if isinstance(config, SlackConfig):
        return SlackNotifier(config, client=client)
    if isinstance(config, PagerDutyConfig):
        return PagerDutyNotifier(config, client=client)
    if isinstance(config, AlertmanagerConfig):
        return AlertmanagerNotifier(config, client=client)
    if isinstance(config, WebhookConfig):
        return WebhookNotifier(config, client=client)
    raise TypeError(f"no notifier for {type(config).__name__}")


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class _Grouping(BaseModel):
    """What a route and the tree both may say about grouping."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None

    @field_validator("group_by")
    @classmethod
    def _label_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if EVERY_LABEL in value and len(value) > 1:
            raise ValueError(f"{EVERY_LABEL!r} groups by every label: it must stand alone")
        for name in value:
            if name != EVERY_LABEL and not _LABEL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a label name")
        return value

    @field_validator("group_interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        # Zero would mean a message per delivery tick: Alertmanager refuses it as well.
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value


class _RouteSpec(_Grouping):
    match: dict[str, str] = {}
    match_re: dict[str, str] = {}
    receivers: list[str]
    carry_on: bool = Field(default=False, alias="continue")
    repeat_interval: Duration | None = None


class _Tree(_Grouping):
    receivers: list[str] = []
    routes: list[_RouteSpec] = []
    repeat_interval: Duration | None = None

    def grouping(self) -> GroupSettings:
        """The file's defaults (Alertmanager's) with the tree's own values over them."""
        defaults = GroupSettings()
        return GroupSettings(
            by=tuple(self.group_by) if self.group_by is not None else defaults.by,
            wait=self.group_wait if self.group_wait is not None else defaults.wait,
            interval=self.group_interval if self.group_interval is not None else defaults.interval,
            repeat=self.repeat_interval,
        )


def load_receivers(
    path: str | Path | None,
    *,
    environ: Mapping[str, str],
    webhook_url: SecretStr | None = None,
) -> Receivers:
    """Read ``path`` (``None``: no file), resolving ``*_env`` fields from ``environ``; add the
    ``ALERT_WEBHOOK_URL`` shorthand when given."""
    configs: dict[str, BaseModel] = {}
    router = Router()
    inhibit: tuple[InhibitRule, ...] | None = None
    if path is not None:
        configs, router, inhibit = _parse(Path(path), environ=environ)
    if webhook_url is not None and "webhook" not in configs:
        configs["webhook"] = WebhookConfig(url=webhook_url)
        router = replace(router, default=(*router.default, "webhook"))
    if path is None and webhook_url is None:
        return Receivers()
    return Receivers(configs=configs, router=router, inhibit_rules=inhibit)


def _parse(
    path: Path, *, environ: Mapping[str, str]
) -> tuple[dict[str, BaseModel], Router, tuple[InhibitRule, ...] | None]:
    file = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ReceiverFileError(f"cannot read ({exc.strerror})", file=file) from None
    except yaml.YAMLError as exc:
        raise ReceiverFileError(f"not valid YAML ({exc})", file=file) from None
    if not isinstance(document, dict) or set(document) - {"receivers", "route", "inhibit_rules"}:
        raise ReceiverFileError(
            "expected a mapping with 'receivers', 'route' and 'inhibit_rules'", file=file
        )
    entries = document.get("receivers") or []
    if not isinstance(entries, list):
        raise ReceiverFileError("must be a list", file=file, field="receivers")
    configs: dict[str, BaseModel] = {}
    for number, entry in enumerate(entries, start=1):
        config = _receiver(entry, file=file, number=number, environ=environ)
        name = getattr(config, "name")  # noqa: B009 - every receiver config has a name
        if name in configs or name == CONSOLE:
            raise ReceiverFileError("defined twice", file=file, receiver=name, field="name")
        configs[name] = config
    router = _router(document.get("route") or {}, file=file, known=set(configs))
    inhibit = document.get("inhibit_rules")
    return configs, router, None if inhibit is None else _inhibit_rules(inhibit, file=file)


def _inhibit_rules(spec: Any, *, file: str) -> tuple[InhibitRule, ...]:
    """Alertmanager's ``inhibit_rules``: ``source_matchers``, ``target_matchers`` (matcher
    strings) and ``equal`` (label names) each; an error names the rule and field."""
    if not isinstance(spec, list):
        raise ReceiverFileError("must be a list", file=file, field="inhibit_rules")
    rules = []
    for number, entry in enumerate(spec):
        where = f"inhibit_rules.{number}"
        known = {"source_matchers", "target_matchers", "equal"}
        if not isinstance(entry, dict) or set(entry) - known:
            raise ReceiverFileError(
                "expected source_matchers, target_matchers and equal", file=file, field=where
            )
        matchers: dict[str, list[str]] = {}
        for key in ("source_matchers", "target_matchers"):
            value = entry.get(key)
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(m, str) for m in value)
            ):
                raise ReceiverFileError(
                    "a list of matchers, e.g. ['alertname=\"InstanceDown\"']",
                    file=file, field=f"{where}.{key}",
                )  # fmt: skip
            for index, text in enumerate(value):
                try:
                    parse_matcher(text)
                except ValueError as exc:
                    raise ReceiverFileError(
                        str(exc), file=file, field=f"{where}.{key}.{index}"
                    ) from None
            matchers[key] = value
        equal = entry.get("equal") or []
        if not isinstance(equal, list) or not all(
            isinstance(n, str) and _LABEL_NAME.fullmatch(n) for n in equal
        ):
            raise ReceiverFileError("a list of label names", file=file, field=f"{where}.equal")
        rules.append(
            InhibitRule.parse(
                source=matchers["source_matchers"], target=matchers["target_matchers"], equal=equal
            )
        )
    return tuple(rules)


def _receiver(entry: Any, *, file: str, number: int, environ: Mapping[str, str]) -> BaseModel:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ReceiverFileError(f"receiver #{number} needs a name", file=file, field="name")
    name = entry["name"]
    resolved: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(key, str) and key.endswith("_env"):
            if not isinstance(value, str) or value not in environ:
                raise ReceiverFileError(
                    f"environment variable {value!r} is not set", file=file, receiver=name,
                    field=key,
                )  # fmt: skip
            resolved[key[: -len("_env")]] = environ[value]
        else:
            resolved[key] = value
    try:
        config: BaseModel = _configs.validate_python(resolved)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = [str(part) for part in error["loc"][1:] if not isinstance(part, int)]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            where = ["type"]
        # The message only: pydantic's own text may repeat the (secret) input.
        raise ReceiverFileError(
            error["msg"], file=file, receiver=name, field=".".join(where) or None
        ) from None
    return config


def _router(spec: Any, *, file: str, known: set[str]) -> Router:
    try:
        tree = _Tree.model_validate(spec)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "route." + ".".join(str(p) for p in error["loc"])
        raise ReceiverFileError(error["msg"], file=file, field=where) from None
    targets = known | {CONSOLE}
    for name in tree.receivers:
        if name not in targets:
            raise ReceiverFileError("no such receiver", file=file, receiver=name, field="route")
    routes = []
    for number, item in enumerate(tree.routes):
        for name in item.receivers:
            if name not in targets:
                raise ReceiverFileError(
                    "no such receiver", file=file, receiver=name, field=f"route.routes.{number}"
                )
        routes.append(
            Route(
                _matchers(item, file=file, number=number),
                tuple(item.receivers),
                item.carry_on,
                item.repeat_interval,
                group_by=tuple(item.group_by) if item.group_by is not None else None,
                group_wait=item.group_wait,
                group_interval=item.group_interval,
            )
        )
    default = tuple(tree.receivers) if tree.receivers else tuple(sorted(known))
    return Router(
        routes=tuple(routes),
        default=default,
        repeat_interval=tree.repeat_interval,
        group=tree.grouping(),
    )


def _matchers(item: _RouteSpec, *, file: str, number: int) -> tuple[Matcher, ...]:
    matchers = [Matcher(label, value) for label, value in item.match.items()]
    for label, pattern in item.match_re.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ReceiverFileError(
                f"bad regular expression ({exc})", file=file,
                field=f"route.routes.{number}.match_re.{label}",
            ) from None  # fmt: skip
        matchers.append(Matcher(label, pattern, regex=True))
    return tuple(matchers)
