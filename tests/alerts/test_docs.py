"""The examples in the alerts package's docstrings are true."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

from alerts.rules.loader import DEFAULT_RULES, load_rules
from alerts.rules.signals import SIGNALS

MODULES = [
    "alerts.delivery.notification",
    "alerts.rules.duration",
    "alerts.engine.context",
    "alerts.delivery.links",
    "alerts.delivery.grouping",
    "alerts.rules.loader",
    "alerts.delivery.notifiers.fields",
    "alerts.store.lock",
    "alerts.delivery.retry",
    "alerts.metrics",
    "alerts.delivery.routing",
    "alerts.settings",
    "alerts.rules.signal",
    "alerts.rules.signals",
    "alerts.rules.capacity",
    "alerts.engine.sources.prometheus",
    "alerts.engine.state",
    "alerts.rules.template",
    "alerts.engine.window",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_public_surfaces_export_what_they_claim() -> None:
    for package in ("alerts.engine.sources", "alerts.delivery.notifiers"):
        module = importlib.import_module(package)
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)


RULES_DOC = Path(__file__).parents[2] / "docs" / "rules.md"


def _documented(section: str) -> set[str]:
    text = RULES_DOC.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z0-9_]+)`", text, flags=re.MULTILINE))


def test_the_rules_page_names_every_shipped_rule_and_signal() -> None:
    shipped = {rule.name for rule in load_rules([DEFAULT_RULES]).rules}
    assert _documented("Shipped rules") == shipped
    latency = {name for name in SIGNALS if name.startswith("http_latency_p")}
    assert _documented("Signals") == set(SIGNALS) - latency | {"http_latency_pNN_seconds"}


RUNBOOK = Path(__file__).parents[2] / "docs" / "runbook.md"


def _anchor(heading: str) -> str:
    # GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_shipped_rule_links_a_runbook_section_that_exists() -> None:
    anchors = {
        _anchor(line[3:]) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")
    }
    for rule in load_rules([DEFAULT_RULES]).rules:
        url = dict(rule.annotations).get("runbook_url", "")
        path, _, anchor = url.partition("#")
        assert path == "docs/runbook.md", f"{rule.name}: runbook_url {url!r}"
        assert anchor in anchors, f"{rule.name}: no section #{anchor} in docs/runbook.md"
