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
```

Each receiver type's typed configuration lives beside its notifier (``alerts.notifiers``);
any field may instead be given as ``<field>_env``, the name of an environment variable.
Routes are tried in order; the first that matches decides unless it says ``continue``. The
console receiver always gets every notification (a log line). ``ALERT_WEBHOOK_URL`` remains a
shorthand: a ``webhook`` receiver added to the default route.

Every mistake is a ``ReceiverFileError`` naming file, receiver and field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from alerts.errors import ReceiverFileError
from alerts.matchers import Matcher
from alerts.notifiers import ConsoleNotifier, Notifier, WebhookConfig, WebhookNotifier
from alerts.notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from alerts.notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier
from alerts.notifiers.slack import SlackConfig, SlackNotifier
from alerts.rule import Duration

CONSOLE = "console"

ReceiverConfig = Annotated[
    WebhookConfig | SlackConfig | PagerDutyConfig | AlertmanagerConfig,
    Field(discriminator="type"),
]
_configs: TypeAdapter[ReceiverConfig] = TypeAdapter(ReceiverConfig)


@dataclass(frozen=True)
class Route:
    """Alerts matching every matcher go to ``receivers``."""

    matchers: tuple[Matcher, ...]
    receivers: tuple[str, ...]
    carry_on: bool = False
    repeat_interval: timedelta | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class Router:
    """Which receivers get an alert with these labels.

    >>> router = Router(routes=(Route((Matcher("severity", "page"),), ("pager",)),),
    ...                 default=("slack",))
    >>> router.receivers_for({"severity": "page"}), router.receivers_for({})
    (('console', 'pager'), ('console', 'slack'))
    """

    routes: tuple[Route, ...] = ()
    default: tuple[str, ...] = ()
    always: tuple[str, ...] = (CONSOLE,)
    repeat_interval: timedelta | None = None

    def repeat_for(self, labels: Mapping[str, str]) -> timedelta | None:
        """How often a still-firing alert is announced again (its first matching route's
        ``repeat_interval``, else the tree's); ``None``: never."""
        for route in self.routes:
            if route.matches(labels) and route.repeat_interval is not None:
                return route.repeat_interval
        return self.repeat_interval

    def receivers_for(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        chosen: list[str] = []
        for route in self.routes:
            if route.matches(labels):
                chosen.extend(route.receivers)
                if not route.carry_on:
                    break
        return tuple(dict.fromkeys([*self.always, *(chosen or self.default)]))


@dataclass(frozen=True)
class Receivers:
    """Configured receivers by name, and the router between them."""

    configs: Mapping[str, BaseModel] = field(default_factory=dict)
    router: Router = field(default_factory=Router)

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


class _RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match: dict[str, str] = {}
    match_re: dict[str, str] = {}
    receivers: list[str]
    carry_on: bool = Field(default=False, alias="continue")
    repeat_interval: Duration | None = None


class _Tree(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receivers: list[str] = []
    routes: list[_RouteSpec] = []
    repeat_interval: Duration | None = None


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
    if path is not None:
        configs, router = _parse(Path(path), environ=environ)
    if webhook_url is not None and "webhook" not in configs:
        configs["webhook"] = WebhookConfig(url=webhook_url)
        router = Router(
            routes=router.routes,
            default=(*router.default, "webhook"),
            repeat_interval=router.repeat_interval,
        )
    if path is None and webhook_url is None:
        return Receivers()
    return Receivers(configs=configs, router=router)


def _parse(path: Path, *, environ: Mapping[str, str]) -> tuple[dict[str, BaseModel], Router]:
    file = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ReceiverFileError(f"cannot read ({exc.strerror})", file=file) from None
    except yaml.YAMLError as exc:
        raise ReceiverFileError(f"not valid YAML ({exc})", file=file) from None
    if not isinstance(document, dict) or set(document) - {"receivers", "route"}:
        raise ReceiverFileError("expected a mapping with 'receivers' and 'route'", file=file)
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
    return configs, _router(document.get("route") or {}, file=file, known=set(configs))


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
        routes.append(Route(_matchers(item, file=file, number=number), tuple(item.receivers),
                            item.carry_on, item.repeat_interval))  # fmt: skip
    default = tuple(tree.receivers) if tree.receivers else tuple(sorted(known))
    return Router(routes=tuple(routes), default=default, repeat_interval=tree.repeat_interval)


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
