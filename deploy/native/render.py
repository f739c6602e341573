"""Configuration for the native stack, rendered from the files docker-compose.yml uses.

Only what differs on loopback is changed: host names and ports, paths, and (for tests) the
scrape interval. Everything else (balancing, retries, jobs, routes) comes from the shared
file, so a change there reaches both stacks.

>>> text = "server api-1:8000 max_fails=3;\\nserver api-2:8000 max_fails=3;\\nlisten 80;"
>>> print(nginx_conf(text, api_ports=[8101, 8102], port=8080))
server 127.0.0.1:8101 max_fails=3;
server 127.0.0.1:8102 max_fails=3;
listen 127.0.0.1:8080;
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
NGINX_CONF = REPOSITORY / "deploy" / "nginx" / "nginx.conf"
PROMETHEUS_YML = REPOSITORY / "prometheus.yml"
ALERTMANAGER_YML = REPOSITORY / "deploy" / "alertmanager" / "alertmanager.yml"
ALERT_STORE_SQL = REPOSITORY / "deploy" / "postgres" / "10-alert-store.sql"

_UPSTREAM = re.compile(r"^(?P<indent>[ \t]*)server api-\d+:8000(?P<options>[^;\n]*);\n?", re.M)
_LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen 80;", re.M)


def nginx_conf(text: str, *, api_ports: Sequence[int], port: int) -> str:
    """The compose nginx.conf with the replicas and its listener moved to loopback ports."""
    first = _UPSTREAM.search(text)
    if first is None or not _LISTEN.search(text):
        raise ValueError(f"{NGINX_CONF}: no 'server api-N:8000' upstream or 'listen 80'")
    lines = "".join(
        f"{first['indent']}server 127.0.0.1:{api}{first['options']};\n" for api in api_ports
    )
    text = _UPSTREAM.sub("", text)
    text = text[: first.start()] + lines.rstrip("\n") + "\n" + text[first.start() :]
    return _LISTEN.sub(rf"\g<indent>listen 127.0.0.1:{port};", text).rstrip("\n")


def prometheus_config(
    shipped: Mapping[str, Any],
    *,
    jobs: Mapping[str, Sequence[str]],
    alertmanager: str,
    rule_files: Sequence[str],
    scrape_interval: str | None = None,
) -> dict[str, Any]:
    """``prometheus.yml`` with each job's targets from ``jobs``; jobs it does not name
    (the compose stack's exporters) are left out, as nothing runs them here."""
    config = dict(shipped)
    if scrape_interval is not None:
        config["global"] = {
            **config.get("global", {}),
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        }
    config["rule_files"] = list(rule_files)
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    config["scrape_configs"] = [
        {**job, "static_configs": [{"targets": list(jobs[job["job_name"]])}]}
        for job in shipped["scrape_configs"]
        if job["job_name"] in jobs
    ]
    return config


def receivers_file(
    alertmanager_url: str, webhooks: Sequence[str], grouping: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every alert to the stack's Alertmanager and to each webhook named (its URL in the
    environment variable :func:`webhook_variable` names: a URL may carry a secret), grouped
    as ``grouping`` says (``group_by``, ``group_wait``, ``group_interval``)."""
    receivers: list[dict[str, Any]] = [
        {"name": "alertmanager", "type": "alertmanager", "url": alertmanager_url}
    ]
    receivers += [
        {"name": name, "type": "webhook", "url_env": webhook_variable(name)} for name in webhooks
    ]
    route = {"receivers": [r["name"] for r in receivers], **(grouping or {})}
    return {"receivers": receivers, "route": route}


def webhook_variable(name: str) -> str:
    """>>> webhook_variable("test-hook")
    'STACK_WEBHOOK_TEST_HOOK'
    """
    return "STACK_WEBHOOK_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def fault_commands(python: str, program: str, directory: Path) -> dict[str, Any]:
    """``DYNOSCOPE_FAULT_COMMANDS``: each fault's argv to switch it on and off."""

    def argv(fault: str, switch: str) -> list[str]:
        return [python, program, "fault", fault, switch, "--dir", str(directory)]

    return {
        fault: {"on": argv(fault, "on"), "off": argv(fault, "off")}
        for fault in ("db_down", "redis_down", "instance_kill")
    }


def dump(data: Mapping[str, Any], header: str) -> str:
    return f"# {header}\n" + yaml.safe_dump(dict(data), sort_keys=False)
