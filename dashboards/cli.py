"""``dynoscope`` subcommands of the dashboards package.

dynoscope dashboards build [--check] [-o DIR]   write (or check) the dashboard JSON files
dynoscope dashboards push [--url URL] [--folder-uid UID] [--folder-title TITLE]
                                                 upload them to Grafana (token: GRAFANA_TOKEN)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dashboards.catalogue import DIRECTORY, check, expected, write
from dashboards.errors import DashboardsError
from dashboards.push import Folder, connect, push
from instrumentation.cli import AddCommand

DEFAULT_GRAFANA = "http://127.0.0.1:3000"


def _build(settings: object, args: argparse.Namespace) -> int:
    directory = Path(args.output)
    try:
        if args.check:
            check(directory)
            print(f"ok: dashboards in {directory} are up to date")
        else:
            for path in write(directory):
                print(f"wrote {path}")
    except DashboardsError as exc:
        print(f"dynoscope dashboards build: {exc}", file=sys.stderr)
        return 1
    return 0


def _push(settings: object, args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("GRAFANA_URL", DEFAULT_GRAFANA)
    token = os.environ.get("GRAFANA_TOKEN") or None
    models = [json.loads(text) for text in expected(DIRECTORY).values()]
    try:
        api = connect(url, token=token)
        folder = Folder(uid=args.folder_uid, title=args.folder_title)
        for pushed in push(models, api=api, folder=folder, url=url):
            print(f"pushed {pushed.uid} (version {pushed.version}): {pushed.url}")
    except DashboardsError as exc:
        print(f"dynoscope dashboards push: {exc}", file=sys.stderr)
        return 1
    return 0


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    """Add ``dynoscope dashboards build|push``."""
    dashboards = command(
        commands,
        "dashboards",
        summary="Build the Grafana dashboards, or upload them to Grafana.",
        example="dynoscope dashboards build --check",
    )
    sub = dashboards.add_subparsers(dest="dashboards_command", required=True, metavar="COMMAND")
    build = command(
        sub,
        "build",
        summary="Write the dashboard JSON files.",
        details="--check writes nothing and exits 1 if a checked-in file is out of date.",
        example="dynoscope dashboards build -o dashboards/json",
    )
    build.add_argument("-o", "--output", default=str(DIRECTORY), metavar="DIR")
    build.add_argument("--check", action="store_true", help="fail if a file is out of date")
    build.set_defaults(run=_build)
    upload = command(
        sub,
        "push",
        summary="Upload the dashboards to Grafana, into a folder, overwriting by uid.",
        details="URL: --url or GRAFANA_URL; token: GRAFANA_TOKEN (never a flag).",
        example="GRAFANA_TOKEN=... dynoscope dashboards push --url http://127.0.0.1:3000",
    )
    upload.add_argument("--url", default=None, help=f"default GRAFANA_URL or {DEFAULT_GRAFANA}")
    upload.add_argument("--folder-uid", default="dynoscope")
    upload.add_argument("--folder-title", default="Dynoscope")
    upload.set_defaults(run=_push)
