"""The examples in the alerts package's docstrings are true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "alerts.duration",
    "alerts.loader",
    "alerts.lock",
    "alerts.signals",
    "alerts.state",
    "alerts.template",
    "alerts.window",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_public_surfaces_export_what_they_claim() -> None:
    for package in ("alerts.sources", "alerts.notifiers"):
        module = importlib.import_module(package)
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)
