"""Annotation templates: Jinja2 in a sandbox, with the alert's ``labels`` and ``value``.

    >>> render("p95 {{ value | fixed(2) }}s on {{ labels.route }}",
    ...        labels={"route": "/properties"}, value=0.73421)
    'p95 0.73s on /properties'

Rule files are checked at load time with undefined names as errors, so a typo such as
``{{ labels.rout }}`` rejects the file instead of paging someone with an empty summary.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from jinja2 import ChainableUndefined, StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

log = logging.getLogger("dynoscope.alerts")


def fixed(value: float, digits: int = 0) -> str:
    """``value`` with ``digits`` decimals, exactly as Go's ``printf "%.Nf"`` writes it, so an
    exported rule's annotation reads the same in Prometheus."""
    return f"{float(value):.{int(digits)}f}"


_STRICT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_LENIENT = SandboxedEnvironment(undefined=ChainableUndefined, autoescape=False)
for _env in (_STRICT, _LENIENT):
    _env.filters["fixed"] = fixed


@lru_cache(maxsize=4096)
def _compiled(source: str) -> Template:
    return _LENIENT.from_string(source)


def check(source: str, *, label_names: Iterable[str] | None) -> None:
    """Raise ``ValueError`` if ``source`` does not compile, or uses a label not in
    ``label_names`` (``None``: labels unknown before the query runs, so any is allowed)."""
    try:
        if label_names is None:
            _compiled(source).render(labels={}, value=0.0)
        else:
            labels = {name: name for name in label_names}
            _STRICT.from_string(source).render(labels=labels, value=0.0)
    except Exception as exc:
        # Not only TemplateError: ``{{ 1 / value }}`` raises ZeroDivisionError, and a rule file
        # must be rejected with a message, never a traceback.
        raise ValueError(f"bad template {source!r}: {_reason(exc)}") from None


_failed: set[str] = set()


def render(source: str, *, labels: Mapping[str, str], value: float, trace_id: str = "") -> str:
    """Render an annotation; a template that fails at run time yields its source text (logged
    once per template, not every cycle), so one annotation cannot fail its whole group.
    ``trace_id`` is there for trace links (``ALERT_TRACE_URL_TEMPLATE``)."""
    try:
        return _compiled(source).render(labels=dict(labels), value=value, trace_id=trace_id)
    except Exception as exc:
        if source not in _failed:
            _failed.add(source)
            log.warning("annotation template %r failed, sent as written: %s", source, _reason(exc))
        return source


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


_VALUE = r"\{\{\s*value\s*\}\}"
_FIXED = r"\{\{\s*value\s*\|\s*fixed\(\s*(\d+)\s*\)\s*\}\}"
_LABEL = r"\{\{\s*labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}"


def to_go_template(source: str) -> str:
    """Translate the subset Prometheus understands; raise ``ValueError`` on anything else.

    >>> to_go_template("{{ value | fixed(1) }}s on {{ labels.route }}")
    '{{ printf "%.1f" $value }}s on {{ $labels.route }}'
    """
    translated = re.sub(_VALUE, "{{ $value }}", source)
    translated = re.sub(_FIXED, lambda m: f'{{{{ printf "%.{m.group(1)}f" $value }}}}', translated)
    translated = re.sub(_LABEL, lambda m: f"{{{{ $labels.{m.group(1)} }}}}", translated)
    leftover = re.sub(
        r"\{\{ (\$value|printf \"%\.\d+f\" \$value|\$labels\.\w+) \}\}", "", translated
    )
    if "{{" in leftover or "{%" in leftover:
        raise ValueError(
            "only {{ value }}, {{ value | fixed(N) }} and {{ labels.NAME }} can be exported"
        )
    return translated
