"""Help is for humans in a terminal: plain text, and every command says what it does and shows
an example."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from dynoscope.cli import build_parser

MARKUP = re.compile(r"``|:\w+:`|\.\. \w+::")


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.extend(_commands(child, (*path, name)))
    return found


COMMANDS = dict(_commands(build_parser()))


def _check(command: tuple[str, ...], text: str) -> None:
    assert not MARKUP.search(text), text
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith(f"usage: dynoscope {' '.join(command)}".rstrip()), text
    description = rest.splitlines()[0]
    assert description[:1].isupper() and description.endswith("."), text
    assert "\nexample" in text, text
    example = text[text.index("\nexample") :].splitlines()[2].strip()
    assert re.match(r"([A-Z_]+=\S+ )*dynoscope ", example), text


def test_every_command_is_listed() -> None:
    expected = {("serve",), ("db", "upgrade"), ("seed",), ("traces",), ("alerts", "run")}
    assert expected | {("rules", "check"), ("rules", "export")} <= set(COMMANDS)


def test_dynoscope_help_as_a_terminal_shows_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dynoscope", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    _check((), result.stdout)
    for name in ("serve", "db", "seed", "traces", "rules", "alerts"):
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert len(line.split()) > 2, line  # a one-line description beside the name


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=lambda c: " ".join(c) or "dynoscope")
def test_help_is_plain_text_with_a_description_and_an_example(command: tuple[str, ...]) -> None:
    _check(command, COMMANDS[command].format_help())


def test_version_names_the_installed_release() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dynoscope", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"dynoscope \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout
