"""The native stack's configuration, rendered from the compose stack's files, is valid to the
real programs that read it (nginx -t, promtool, the receivers loader)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts.delivery.receivers import load_receivers
from deploy.native import render
from deploy.native.postgres import MissingBinary
from deploy.native.processes import program
from deploy.native.stack import write_private
from tests.support.postgres_cluster import missing
from tests.support.prometheus import binary


def installed(name: str, package: str) -> str:
    try:
        return program(name, package)
    except MissingBinary as exc:
        missing(exc)


def test_nginx_conf_keeps_the_shared_file_and_moves_replicas_to_loopback(tmp_path: Path) -> None:
    text = render.nginx_conf(render.NGINX_CONF.read_text(), api_ports=[8101, 8102, 8103], port=8080)
    assert re.findall(r"server (\S+) max_fails=3 fail_timeout=10s;", text) == [
        "127.0.0.1:8101",
        "127.0.0.1:8102",
        "127.0.0.1:8103",
    ]
    assert "listen 127.0.0.1:8080;" in text and "api-1" not in text
    assert "least_conn;" in text and "proxy_next_upstream error timeout;" in text
    (tmp_path / "nginx.conf").write_text(text)
    argv = [installed("nginx", "nginx"), "-t", "-p", f"{tmp_path}/", "-c", "nginx.conf"]
    argv += ["-e", str(tmp_path / "error.log"), "-g", f"pid {tmp_path / 'nginx.pid'};"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_nginx_conf_names_the_file_when_the_shared_one_changes_shape() -> None:
    with pytest.raises(ValueError, match=r"nginx\.conf"):
        render.nginx_conf("upstream api { server web:80; }", api_ports=[1], port=2)


def test_prometheus_config_passes_promtool_with_loopback_targets(tmp_path: Path) -> None:
    config = render.prometheus_config(
        yaml.safe_load(render.PROMETHEUS_YML.read_text()),
        jobs={"api": ["127.0.0.1:1", "127.0.0.1:2"], "alerts": ["127.0.0.1:3"]},
        alertmanager="127.0.0.1:4",
        rule_files=[str(tmp_path / "rules" / "*.yml")],
        scrape_interval="1s",
    )
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets == {"api": ["127.0.0.1:1", "127.0.0.1:2"], "alerts": ["127.0.0.1:3"]}
    assert config["global"]["scrape_interval"] == "1s"
    path = tmp_path / "prometheus.yml"
    path.write_text(render.dump(config, "test"))
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_receivers_file_loads_and_keeps_webhook_urls_out_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "receivers.yml"
    url = "http://127.0.0.1:9/hook?token=secret"
    path.write_text(render.dump(render.receivers_file("http://127.0.0.1:9093", ["hook"]), "t"))
    assert "secret" not in path.read_text()
    receivers = load_receivers(
        str(path), environ={render.webhook_variable("hook"): url}, webhook_url=None
    )
    assert set(receivers.configs) == {"alertmanager", "hook"}
    hook = receivers.configs["hook"]
    assert hook.url.get_secret_value() == url  # type: ignore[attr-defined]


def test_fault_commands_run_the_stack_program_for_each_fault(tmp_path: Path) -> None:
    faults = render.fault_commands("/venv/python", "/repo/deploy/native/stack.py", tmp_path)
    assert set(faults) == {"db_down", "redis_down", "instance_kill"}
    assert faults["db_down"]["on"] == [
        "/venv/python", "/repo/deploy/native/stack.py", "fault", "db_down", "on",
        "--dir", str(tmp_path),
    ]  # fmt: skip
    loaded = yaml.safe_load(render.dump(faults, "t"))
    assert loaded["redis_down"]["off"][3:5] == ["redis_down", "off"]


def test_private_files_are_mode_600_even_when_they_existed(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, "JWT_SECRET=x\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "JWT_SECRET=x\n"


def test_stack_ports_stay_out_of_the_range_outgoing_connections_take() -> None:
    from deploy.native.topology import EPHEMERAL, free_port

    low = int(EPHEMERAL.read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)  # never handed out twice
    assert all(1024 <= port < low for port in ports), ports
