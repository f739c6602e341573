"""Load rule files: one file, a folder of them, or several of either.

``ALERT_RULES_PATH`` holds one or more paths separated by ``os.pathsep`` (``:`` on Linux);
unset, the shipped ``alerts/rules/default.yml`` is used. A folder contributes its ``*.yml``
and ``*.yaml`` files in name order.

Thresholds are changed without editing the shipped file by adding an *override file*, whose
``overrides`` map names rules defined in another file::

    # ALERT_RULES_PATH=alerts/rules/default.yml:/etc/dynoscope/overrides.yml
    overrides:
      ApiLatencyP95High: {threshold: 0.8, for: 10m}
      CacheHitRateLow: {params: {min_requests_per_second: 5}, labels: {team: search}}

Overrides may set ``threshold``, ``window``, ``for``, ``keep_firing_for``,
``repeat_interval``, ``no_data``, ``params`` and ``labels`` (merged into the rule's own);
the result is validated like a rule.

Any mistake rejects the whole set, with every problem named by file, rule and field:

    >>> load_rules([])
    Traceback (most recent call last):
    ...
    alerts.errors.RuleFileError: <none>: no rule files given
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from alerts.engine.query import labels_of
from alerts.errors import Problem, RuleFileError
from alerts.rules import template
from alerts.rules.rule import (
    NAME_PATTERN,
    FileSpec,
    Group,
    GroupSpec,
    NoData,
    OverrideSpec,
    RawQuery,
    Rule,
    RuleSet,
    RuleSpec,
    SignalQuery,
)
from alerts.rules.signal import SignalArgs
from alerts.rules.signals import SIGNALS, signal_named

DEFAULT_RULES = Path(__file__).parent / "default.yml"


def rule_paths(setting: str | None) -> list[Path]:
    """The paths an ``ALERT_RULES_PATH`` value names (the shipped file when unset)."""
    if not setting:
        return [DEFAULT_RULES]
    return [Path(part) for part in setting.split(os.pathsep) if part]


def load_rules(paths: Iterable[str | Path]) -> RuleSet:
    """Load, override, validate and compile the rule files at ``paths``."""
    files = _expand([Path(p) for p in paths])
    problems: list[Problem] = []
    if not files:
        raise RuleFileError([Problem(file="<none>", message="no rule files given")])
    collected = _Collected()
    for path in files:
        _read(path, collected=collected, problems=problems)
    _apply_overrides(collected, problems)
    groups = _compile(collected, problems)
    if problems:
        raise RuleFileError(problems)
    return RuleSet(groups=tuple(groups), files=tuple(str(path) for path in files))


def _expand(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in {".yml", ".yaml"}))
        else:
            files.append(path)
    return files


@dataclass
class _RawGroup:
    spec: GroupSpec
    file: str
    rules: list[RuleSpec] = field(default_factory=list)


@dataclass
class _Collected:
    groups: list[_RawGroup] = field(default_factory=list)
    overrides: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def _errors(
    exc: ValidationError, *, file: str, rule: str | None, prefix: str = ""
) -> list[Problem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(Problem(file=file, rule=rule, field=prefix + where, message=message))
    return problems


def _read(path: Path, *, collected: _Collected, problems: list[Problem]) -> None:
    file = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(Problem(file=file, message=f"cannot read: {exc.strerror}"))
        return
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problems.append(Problem(file=file, message=f"not valid YAML{line}"))
        return
    try:
        spec = FileSpec.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems.extend(_errors(exc, file=file, rule=None))
        return
    if not spec.groups and not spec.overrides:
        problems.append(Problem(file=file, message="holds neither groups nor overrides"))
    for index, raw_group in enumerate(spec.groups):
        try:
            group = GroupSpec.model_validate(raw_group)
        except ValidationError as exc:
            problems.extend(_errors(exc, file=file, rule=None, prefix=f"groups.{index}."))
            continue
        collected.groups.append(_read_rules(group, file=file, problems=problems))
    collected.overrides.extend((file, name, body) for name, body in spec.overrides.items())


def _read_rules(group: GroupSpec, *, file: str, problems: list[Problem]) -> _RawGroup:
    raw = _RawGroup(spec=group, file=file)
    for index, body in enumerate(group.rules):
        name = body.get("alert") if isinstance(body, dict) else None
        label = str(name) if name else f"#{index + 1} of group {group.name}"
        try:
            raw.rules.append(RuleSpec.model_validate(body))
        except ValidationError as exc:
            problems.extend(_errors(exc, file=file, rule=label))
    return raw


def _apply_overrides(collected: _Collected, problems: list[Problem]) -> None:
    where = {
        rule.alert: (group, i) for group in collected.groups for i, rule in enumerate(group.rules)
    }
    for file, name, body in collected.overrides:
        try:
            override = OverrideSpec.model_validate(body)
        except ValidationError as exc:
            problems.extend(_errors(exc, file=file, rule=name))
            continue
        if name not in where:
            problems.append(Problem(file=file, rule=name, message="overrides an unknown rule"))
            continue
        group, index = where[name]
        original = group.rules[index]
        changes = override.model_dump(exclude_none=True)
        if "labels" in changes:
            changes["labels"] = {**original.labels, **changes["labels"]}
        if "params" in changes:
            changes["params"] = {**original.params, **changes["params"]}
        group.rules[index] = original.model_copy(update=changes)


def _compile(collected: _Collected, problems: list[Problem]) -> list[Group]:
    seen_rules: dict[str, str] = {}
    seen_groups: dict[str, str] = {}
    groups = []
    for raw in collected.groups:
        if raw.spec.name in seen_groups:
            problems.append(
                Problem(
                    file=raw.file,
                    rule=f"group {raw.spec.name}",
                    field="name",
                    message=f"duplicate group name (also in {seen_groups[raw.spec.name]})",
                )
            )
        seen_groups[raw.spec.name] = raw.file
        rules = []
        for spec in raw.rules:
            if spec.alert in seen_rules:
                problems.append(
                    Problem(
                        file=raw.file,
                        rule=spec.alert,
                        field="alert",
                        message=f"duplicate alert name (also in {seen_rules[spec.alert]})",
                    )
                )
            seen_rules[spec.alert] = raw.file
            compiled = compile_rule(spec, group=raw.spec.name, file=raw.file, problems=problems)
            if compiled is not None:
                rules.append(compiled)
        groups.append(Group(name=raw.spec.name, interval=raw.spec.interval, rules=tuple(rules)))
    return groups


def compile_rule(spec: RuleSpec, *, group: str, file: str, problems: list[Problem]) -> Rule | None:
    """Check what the schema cannot (signal, labels, params, templates) and build a Rule."""
    found: list[Problem] = []

    def problem(name: str, message: str) -> None:
        found.append(Problem(file=file, rule=spec.alert, field=name, message=message))

    query: SignalQuery | RawQuery | None = None
    label_names: set[str] | None = {"alertname", *spec.labels}
    if (spec.signal is None) == (spec.expr is None):
        problem("signal", "give either a signal or a raw PromQL expr")
    elif spec.expr is not None:
        for name in ("by", "window", "op", "threshold", "params"):
            if getattr(spec, name):
                problem(name, "only for signal rules; put it in the expr")
        if spec.no_data is not NoData.OK:
            problem("no_data", "only for signal rules: raw PromQL returns only alerting series")
        query = RawQuery(spec.expr)
        label_names = None
    else:
        assert spec.signal is not None
        query = _signal_query(spec, problem)
        label_names = {*(label_names or ()), *spec.by}
    for name in spec.labels:
        if not _valid_name(name):
            problem(f"labels.{name}", "label names must match " + NAME_PATTERN)
    for name, source in spec.annotations.items():
        try:
            template.check(source, label_names=label_names)
        except ValueError as exc:
            problem(f"annotations.{name}", str(exc))
    problems.extend(found)
    if found or query is None:
        return None
    return Rule(
        name=spec.alert,
        group=group,
        query=query,
        op=spec.op,
        threshold=spec.threshold,
        for_=spec.for_,
        keep_firing_for=spec.keep_firing_for,
        repeat_interval=spec.repeat_interval,
        no_data=spec.no_data,
        labels=labels_of(spec.labels),
        annotations=tuple(sorted(spec.annotations.items())),
        file=file,
    )


def _signal_query(spec: RuleSpec, problem: Any) -> SignalQuery | None:
    assert spec.signal is not None
    try:
        signal = signal_named(spec.signal)
    except KeyError:
        known = ", ".join(sorted(SIGNALS))
        problem(
            "signal", f"unknown signal {spec.signal!r}; known: {known}, http_latency_pNN_seconds"
        )
        return None
    except ValueError as exc:
        problem("signal", f"{spec.signal}: {exc}")
        return None
    for name in ("window", "op", "threshold"):
        if getattr(spec, name) is None:
            problem(name, f"required with signal {spec.signal}")
    unknown = sorted(set(spec.by) - signal.labels)
    if unknown:
        allowed = ", ".join(sorted(signal.labels)) or "none"
        problem("by", f"{', '.join(unknown)} not a label of {spec.signal} (allowed: {allowed})")
    params: BaseModel | None = None
    try:
        params = signal.params.model_validate(spec.params)
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            message = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
            problem(f"params.{where}", str(message))
    if spec.window is None or params is None or unknown:
        return None
    return SignalQuery(
        spec.signal, SignalArgs(by=tuple(spec.by), window=spec.window, params=params)
    )


def _valid_name(name: str) -> bool:
    return name.isidentifier() and name.isascii()
