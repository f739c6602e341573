"""SQL statements reduced to what is safe and bounded to report: operation, table, shape.

Literals and bind parameters are replaced by ``?`` and lists of them collapsed, so the
normalised text never carries data, and statements that differ only in their values share
one fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

OPERATIONS = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "CREATE",
        "ALTER",
        "DROP",
        "TRUNCATE",
        "PRAGMA",
        "SHOW",
        "SET",
        "EXPLAIN",
        "COPY",
        "VACUUM",
        "ANALYZE",
    }
)
OTHER = "OTHER"
NO_TABLE = ""

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^']|'')*'|\$\$.*?\$\$", re.DOTALL)
_PARAMS = re.compile(r"\$\d+|%\(\w+\)s|%s|(?<![:\w]):\w+|\?")
_NUMBERS = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE)
_LISTS = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_VALUES_ROWS = re.compile(r"(\(\?\))(?:\s*,\s*\(\?\))+")
_SPACE = re.compile(r"\s+")
_WITH = re.compile(r"^WITH\b.*?\)\s*(SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE | re.DOTALL)
_IDENT = r"(?:\"[^\"]+\"|[A-Za-z_][\w$]*)(?:\.(?:\"[^\"]+\"|[A-Za-z_][\w$]*))?"
_TABLE = {
    "SELECT": re.compile(rf"\bFROM\s+({_IDENT})", re.IGNORECASE),
    "DELETE": re.compile(rf"\bFROM\s+({_IDENT})", re.IGNORECASE),
    "INSERT": re.compile(rf"\bINTO\s+({_IDENT})", re.IGNORECASE),
    "UPDATE": re.compile(rf"^\s*UPDATE\s+({_IDENT})", re.IGNORECASE),
}


@dataclass(frozen=True)
class Statement:
    """What may be reported about one SQL statement."""

    operation: str
    table: str
    normalised: str
    fingerprint: str


def normalise(sql: str) -> str:
    """The statement with comments, literals and parameters removed, whitespace collapsed.

    >>> normalise("SELECT * FROM t WHERE id IN (1, 2, 3) AND name = 'bob'")
    'SELECT * FROM t WHERE id IN (?) AND name = ?'
    """
    text = _COMMENTS.sub(" ", sql)
    text = _STRINGS.sub("?", text)
    text = _PARAMS.sub("?", text)
    text = _NUMBERS.sub("?", text)
    text = _LISTS.sub("(?)", text)
    text = _VALUES_ROWS.sub(r"\1", text)
    return _SPACE.sub(" ", text).strip()


def _table(operation: str, text: str) -> str:
    pattern = _TABLE.get(operation)
    if pattern is None:
        return NO_TABLE
    found = pattern.search(text)
    if found is None:
        return NO_TABLE
    return found.group(1).replace('"', "").lower()


@lru_cache(maxsize=4096)
def describe(sql: str) -> Statement:
    """Operation, main table, normalised text and fingerprint of ``sql`` (cached: ORMs repeat).

    >>> s = describe("SELECT properties.id FROM properties WHERE properties.id = $1::INTEGER")
    >>> (s.operation, s.table)
    ('SELECT', 'properties')
    """
    text = normalise(sql)
    keyword = text.split(" ", 1)[0].upper() if text else ""
    if keyword == "WITH":
        main = _WITH.search(text)
        keyword = main.group(1).upper() if main else OTHER
    operation = keyword if keyword in OPERATIONS else OTHER
    fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Statement(
        operation=operation,
        table=_table(operation, text),
        normalised=text,
        fingerprint=fingerprint,
    )
