"""Label matchers, as routes and silences use them: ``name="value"`` or ``name=~"regex"``.

    >>> parse_matcher('severity="page"')
    Matcher(label='severity', value='page', regex=False)
    >>> parse_matcher('route=~"/admin.*"').matches({"route": "/admin/users"})
    True

A regex matches the whole value (as in Alertmanager); a missing label is the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_FORM = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s]*))\s*$')


@dataclass(frozen=True)
class Matcher:
    """``label`` equal to ``value``, or (``regex``) fully matching it."""

    label: str
    value: str
    regex: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        found = labels.get(self.label, "")
        if self.regex:
            return re.fullmatch(self.value, found) is not None
        return found == self.value

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{"=~" if self.regex else "="}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """``name="value"``, ``name=value`` or ``name=~"regex"``; ``ValueError`` saying what is
    wrong otherwise."""
    found = _FORM.match(text)
    if found is None:
        raise ValueError(f'{text!r} is not a matcher: use name="value" or name=~"regex"')
    label, operator, quoted, bare = found.groups()
    value = quoted if quoted is not None else bare
    value = re.sub(r"\\(.)", r"\1", value)
    regex = operator == "=~"
    if regex:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: bad regular expression ({exc})") from None
    return Matcher(label, value, regex)
