"""The README's first steps, run as written against the API as ``make run`` serves it (the
embedded default, the demo data), only the address replaced by a free port's."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from api.app import create_app
from api.migrate import upgrade
from api.seed import seed
from api.settings import Settings
from tests.support.stack import free_port, serving

README = Path(__file__).resolve().parents[1] / "README.md"
ADDRESS = "http://127.0.0.1:8000"


def first_steps() -> str:
    """The shell block under "### First steps"."""
    section = README.read_text(encoding="utf-8").split("### First steps", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no shell block under First steps"
    return match.group(1)


async def test_the_first_steps_work_as_written(sqlite_environ: dict[str, str]) -> None:
    block = first_steps()
    assert ADDRESS in block
    app = create_app(Settings.from_env(sqlite_environ))
    port = free_port()
    async with serving(app, port):
        services = app.state.services
        await upgrade(services.engine)
        await seed(services.sessions, properties=20, demo_password="demo-password")
        process = await asyncio.create_subprocess_exec(
            "sh", "-ec", block.replace(ADDRESS, f"http://127.0.0.1:{port}"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    created, listed = answers(out.decode())
    assert created["title"] == "Bright two-room flat" and created["status"] == "available"
    items = listed["items"] if isinstance(listed, dict) else listed
    assert created["id"] in {item["id"] for item in items}


def answers(text: str) -> list[Any]:
    """The JSON documents curl printed one after the other."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.strip()):
        value, at = decoder.raw_decode(text, at)
        found.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return found
