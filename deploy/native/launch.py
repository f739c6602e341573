"""Start a native stack: clusters, Redis, Alertmanager, Prometheus, migrations and demo data,
the API instances, the schedulers and nginx, each waited for before the next.

>>> stack = start(StackConfig(directory=Path(".stack"), scrape_interval="1s"))  # doctest: +SKIP

Configuration comes from the compose stack's files (``render``); a part that fails to start
stops what was started before it, and the error carries the end of its log.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from deploy.native import render
from deploy.native.processes import program, spawn, wait_http
from deploy.native.topology import Stack, StackConfig, StackError, free_port, write_private

PROGRAM = Path(__file__).resolve().with_name("stack.py")  # what the fault commands run


def start(config: StackConfig) -> Stack:
    """Start a stack in ``config.directory`` (made afresh); stopped again if any part fails."""
    directory = config.directory.resolve()
    if (directory / "state.json").exists():
        existing = Stack.load(directory)
        if existing.running:
            raise StackError(f"a stack is already running in {directory}")
        existing.stop()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    directory.chmod(0o711)  # the postgres user must reach its cluster below; nothing else
    (directory / "logs").mkdir()
    names = ["nginx", "prometheus", "alertmanager", "postgres", "alerts-postgres", "redis"]
    names += [f"api-{n + 1}" for n in range(config.instances)]
    names += [f"scheduler-{n + 1}" for n in range(config.schedulers)]
    stack = Stack(
        directory=directory,
        ports={name: free_port() for name in names},
        pids={},
        config=config.as_json(),
    )
    _write_secrets(stack, config.webhooks)
    stack.save()
    try:
        _start_all(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def _write_secrets(stack: Stack, webhooks: Mapping[str, str]) -> None:
    values = {
        "JWT_SECRET": secrets.token_hex(32),
        "ADMIN_TOKEN": secrets.token_urlsafe(32),
        **{render.webhook_variable(name): url for name, url in webhooks.items()},
    }
    write_private(stack.directory / "secrets.env", "".join(f"{k}={v}\n" for k, v in values.items()))


def _start_all(stack: Stack) -> None:
    _start_postgres(stack)
    stack.start_redis()
    stack.save()
    _write_configs(stack)
    _start_alertmanager(stack)
    _start_prometheus(stack)
    stack.save()
    _migrate_and_seed(stack)
    for name in stack.instances:
        stack.start_instance(name)
        stack.save()
    for name in stack.schedulers:
        stack.start_scheduler(name)
        stack.save()
    _start_nginx(stack)
    stack.save()


def _start_postgres(stack: Stack) -> None:
    """Two clusters: the service's, and the alert store's. With the lease the schedulers
    need their store to lead, so a store on the service's server would go down with it and
    the outage would never be announced (the point of DatabaseUnavailable)."""
    for cluster in (stack.cluster, stack.store_cluster):
        cluster.create()
        cluster.start()
        cluster.psql("CREATE ROLE dynoscope LOGIN CREATEDB")
    stack.cluster.psql("CREATE DATABASE dynoscope OWNER dynoscope")
    # The compose stack's init script, run as its user: the alert store's own database.
    stack.store_cluster.psql(render.ALERT_STORE_SQL.read_text(), user="dynoscope")


def _write_configs(stack: Stack) -> None:
    directory = stack.directory
    receivers = render.receivers_file(
        stack.urls["alertmanager"], stack.config["webhooks"], stack.config.get("grouping")
    )
    (directory / "receivers.yml").write_text(
        render.dump(
            receivers,
            "Receivers of the native stack's schedulers (alerts/delivery/receivers.py)",
        )
    )
    faults = render.fault_commands(sys.executable, str(PROGRAM), directory)
    (directory / "faults.yml").write_text(
        render.dump(faults, "DYNOSCOPE_FAULT_COMMANDS: each fault's argv to switch it on/off")
    )


def _start_alertmanager(stack: Stack) -> None:
    directory = stack.directory / "alertmanager"
    argv = [
        program("prometheus-alertmanager", "prometheus-alertmanager"),
        f"--config.file={render.ALERTMANAGER_YML}",  # the compose stack's, unchanged
        f"--storage.path={directory}",
        f"--web.listen-address=127.0.0.1:{stack.ports['alertmanager']}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    _run_ready(stack, "alertmanager", argv, stack.urls["alertmanager"] + "/-/ready")


def _start_prometheus(stack: Stack) -> None:
    directory = stack.directory / "prometheus"
    (directory / "rules").mkdir(parents=True)
    rules = directory / "rules" / "dynoscope.yml"
    _dynoscope_run(stack, "rules", "export", "-o", str(rules))
    jobs = {
        "api": [f"127.0.0.1:{stack.ports[name]}" for name in stack.instances],
        "alerts": [f"127.0.0.1:{stack.ports[name]}" for name in stack.schedulers],
        "prometheus": [f"127.0.0.1:{stack.ports['prometheus']}"],
    }
    config = render.prometheus_config(
        yaml.safe_load(render.PROMETHEUS_YML.read_text()),
        jobs=jobs,
        alertmanager=f"127.0.0.1:{stack.ports['alertmanager']}",
        rule_files=[str(directory / "rules" / "*.yml")],
        scrape_interval=stack.config.get("scrape_interval"),
    )
    (directory / "prometheus.yml").write_text(
        render.dump(config, "Rendered by deploy/native/stack.py from prometheus.yml")
    )
    argv = [
        program("prometheus", "prometheus"),
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{stack.ports['prometheus']}",
        "--enable-feature=exemplar-storage",
        "--log.level=warn",
    ]
    _run_ready(stack, "prometheus", argv, stack.urls["prometheus"] + "/-/ready")


def _start_nginx(stack: Stack) -> None:
    directory = stack.directory / "nginx"
    directory.mkdir()
    text = render.nginx_conf(
        render.NGINX_CONF.read_text(),
        api_ports=[stack.ports[name] for name in stack.instances],
        port=stack.ports["nginx"],
    )
    (directory / "nginx.conf").write_text(
        "# Rendered by deploy/native/stack.py from deploy/nginx/nginx.conf\n" + text + "\n"
    )
    argv = [
        program("nginx", "nginx"),
        "-p", f"{directory}/", "-c", "nginx.conf", "-e", str(stack.log("nginx-error")),
        "-g", f"daemon off; pid {directory / 'nginx.pid'};",
    ]  # fmt: skip
    _run_ready(stack, "nginx", argv, stack.urls["nginx"] + "/nginx-health")


def _run_ready(stack: Stack, name: str, argv: list[str], ready: str) -> None:
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    stack.pids[name] = spawn(argv, log=stack.log(name), env=environ)
    wait_http(name, ready, stack.pids[name], stack.log(name))


def _dynoscope_run(stack: Stack, *args: str) -> None:
    result = subprocess.run(  # noqa: S603 - our own argv, no shell
        stack.dynoscope_argv(*args),
        env=stack.api_environ(stack.instances[0]),
        cwd=stack.directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"dynoscope {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def _migrate_and_seed(stack: Stack) -> None:
    _dynoscope_run(stack, "db", "upgrade")
    count = str(stack.config["seed_properties"])
    _dynoscope_run(stack, "seed", "--properties", count, "--if-empty")
