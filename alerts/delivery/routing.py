"""Routing: which receivers get an alert, through which route, grouped how.

Routes are tried in order; the first that matches decides unless it says ``continue``
(``carry_on``); an alert no route matches goes to the tree's default receivers. ``always``
receivers (the console) get every alert, grouped like the first route that chose the alert.
A route's grouping (``alerts.delivery.grouping.GroupSettings``) is the tree's with its own
values over it. ``alerts.delivery.receivers`` reads all of it from the receivers file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from alerts.delivery.grouping import Destination, GroupSettings
from alerts.silences.matchers import Matcher

CONSOLE = "console"


@dataclass(frozen=True)
class Route:
    """Alerts matching every matcher go to ``receivers``."""

    matchers: tuple[Matcher, ...]
    receivers: tuple[str, ...]
    carry_on: bool = False
    repeat_interval: timedelta | None = None
    group_by: tuple[str, ...] | None = None
    group_wait: timedelta | None = None
    group_interval: timedelta | None = None

    def grouping(self, tree: GroupSettings) -> GroupSettings:
        """``tree`` with this route's own values over it."""
        return GroupSettings(
            by=self.group_by if self.group_by is not None else tree.by,
            wait=self.group_wait if self.group_wait is not None else tree.wait,
            interval=self.group_interval if self.group_interval is not None else tree.interval,
            repeat=self.repeat_interval if self.repeat_interval is not None else tree.repeat,
        )

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
    group: GroupSettings = field(default_factory=GroupSettings.ungrouped)

    def repeat_for(self, labels: Mapping[str, str]) -> timedelta | None:
        """How often a still-firing alert is announced again (its first matching route's
        ``repeat_interval``, else the tree's); ``None``: never."""
        for route in self.routes:
            if route.matches(labels) and route.repeat_interval is not None:
                return route.repeat_interval
        return self.repeat_interval

    def receivers_for(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(d.receiver for d in self.destinations(labels))

    def destinations(self, labels: Mapping[str, str]) -> tuple[Destination, ...]:
        """Each receiver of an alert with ``labels`` with the route (and its grouping) that
        chose it; a receiver chosen twice (``continue``) keeps its first route."""
        tree = replace(self.group, repeat=self.repeat_interval)
        chosen: list[Destination] = []
        for number, route in enumerate(self.routes):
            if route.matches(labels):
                settings = route.grouping(tree)
                chosen.extend(Destination(r, f"routes.{number}", settings) for r in route.receivers)
                if not route.carry_on:
                    break
        if not chosen:
            chosen = [Destination(r, "route", tree) for r in self.default]
        first = chosen[0] if chosen else Destination("", "route", tree)
        always = [replace(first, receiver=r) for r in self.always]
        unique: dict[str, Destination] = {}
        for destination in (*always, *chosen):
            unique.setdefault(destination.receiver, destination)
        return tuple(unique.values())
