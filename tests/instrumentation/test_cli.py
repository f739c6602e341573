"""``dynoscope traces``: the slowest recent traces, and one as a span tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import Settings
from dynoscope.cli import build_parser
from exporters.tracefile import read_spans
from instrumentation.traceview import TREE_LEGEND
from tests.support.stack import running_app


def _run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    result: int = args.run(Settings.from_env({}), args)
    return result


async def test_lists_slowest_and_prints_a_tree(
    traced: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_app(traced) as api:
        await api.client.get("/healthz")
        await api.client.get("/properties?city=Berlin")
        await api.client.get("/properties?city=Berlin")
    path = traced["DYNOSCOPE_TRACES_FILE"]
    listing = next(s for s in read_spans(path) if s.name == "GET /properties" and s.parent_id == "")

    assert _run("traces", "--file", path) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line[:1].isalnum() and "GET" in line]
    assert len(lines) == 3
    durations = [float(line.split(" ms")[0].split()[-1]) for line in lines]
    assert durations == sorted(durations, reverse=True)

    assert _run("traces", "--file", path, listing.trace_id[:12]) == 0
    tree, legend = capsys.readouterr().out.rstrip("\n").split("\n\n")
    assert legend == TREE_LEGEND  # the columns explained
    tree = tree.splitlines()
    assert tree[0].startswith("GET /properties ")
    assert any("cache get properties" in line and "cache.result=miss" in line for line in tree)
    assert any("SELECT properties" in line and "db.query.text=SELECT" in line for line in tree)
    assert all(line.startswith(("├─ ", "└─ ")) for line in tree[1:])
    assert "Berlin" not in "\n".join(tree)  # the query parameter is not in the trace


def test_missing_file_and_unknown_trace_are_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("traces", "--file", str(tmp_path / "none.jsonl")) == 1
    assert "no traces in" in capsys.readouterr().out
