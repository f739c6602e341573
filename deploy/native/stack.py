"""The production topology on loopback, without containers: ``make stack``, ``make stack-down``.

>>> stack = start(StackConfig(directory=Path(".stack")))  # doctest: +SKIP
>>> stack.urls["nginx"]  # doctest: +SKIP
'http://127.0.0.1:38211'
>>> stack.kill_instance(2); stack.restart_instance(2); stack.stop()  # doctest: +SKIP

Three API instances (``dynoscope serve``, production mode) behind nginx, two schedulers
(``dynoscope alerts run``) competing for the lease in the alert store, PostgreSQL clusters
(the service's, and the alert store's) and a Redis of the stack's own, Prometheus and
Alertmanager; every port free and chosen at start. Process ids, ports and settings go to
``state.json`` in the stack's directory, the generated secrets to ``secrets.env`` (both
mode 600), logs to ``logs/``. Any process can then stop the stack or switch a fault
(``stack.py fault db_down on --dir .stack``), which is what the admin fault API's commands
(``faults.yml``) run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parents[2])  # not deploy/native: no shadowing

import yaml

from deploy.native import render
from deploy.native.postgres import Cluster
from deploy.native.processes import alive, program, spawn, terminate, wait_http
from deploy.native.redis_server import redis_argv, redis_binary, wait_ready

PROGRAM = Path(__file__).resolve()
FAULTS = ("db_down", "redis_down", "instance_kill")


class StackError(RuntimeError):
    """The stack cannot do what was asked (already running, not running, bad fault)."""


@dataclass
class StackConfig:
    """What to run; everything not named here is the production default."""

    directory: Path
    instances: int = 3
    schedulers: int = 2
    rules_path: str | None = None  # default: the shipped rules
    scrape_interval: str | None = None  # default: prometheus.yml's
    webhooks: dict[str, str] = field(default_factory=dict)  # receiver name -> URL
    api_environ: dict[str, str] = field(default_factory=dict)  # e.g. MAX_IN_FLIGHT
    scheduler_environ: dict[str, str] = field(default_factory=dict)  # e.g. ALERT_LEASE_SECONDS
    seed_properties: int = 500
    faults_enabled: bool = True

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["directory"] = str(self.directory)
        data["webhooks"] = sorted(self.webhooks)  # URLs are secrets: kept in secrets.env
        return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (mode 600, also when the file existed)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as output:
        output.write(text)
    os.chmod(path, 0o600)


@dataclass
class Stack:
    """A running stack, as its state file describes it; methods act on its processes."""

    directory: Path
    ports: dict[str, int]
    pids: dict[str, int]
    config: dict[str, Any]

    # -- state --------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> Stack:
        path = directory / "state.json"
        if not path.exists():
            raise StackError(f"no stack in {directory} (start one with `make stack`)")
        data = json.loads(path.read_text())
        return cls(
            directory=directory, ports=data["ports"], pids=data["pids"], config=data["config"]
        )

    def save(self) -> None:
        state = {"ports": self.ports, "pids": self.pids, "config": self.config, "urls": self.urls}
        write_private(self.directory / "state.json", json.dumps(state, indent=2) + "\n")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One change of processes at a time (a fault command and the tests may race)."""
        with (self.directory / "lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                fresh = Stack.load(self.directory)
                self.pids, self.ports = fresh.pids, fresh.ports
                yield
                self.save()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def instances(self) -> list[str]:
        return [f"api-{n + 1}" for n in range(int(self.config["instances"]))]

    @property
    def schedulers(self) -> list[str]:
        return [f"scheduler-{n + 1}" for n in range(int(self.config["schedulers"]))]

    @property
    def urls(self) -> dict[str, str]:
        urls = {"nginx": f"http://127.0.0.1:{self.ports['nginx']}"}
        urls |= {name: f"http://127.0.0.1:{self.ports[name]}" for name in self.instances}
        urls["prometheus"] = f"http://127.0.0.1:{self.ports['prometheus']}"
        urls["alertmanager"] = f"http://127.0.0.1:{self.ports['alertmanager']}"
        urls |= {name: f"http://127.0.0.1:{self.ports[name]}/metrics" for name in self.schedulers}
        return urls

    def url(self, database: str = "dynoscope") -> str:
        """A PostgreSQL URL on the service's cluster (``dynoscope``: the service's database)."""
        return self.cluster.url(database, user="dynoscope")

    @property
    def store_url(self) -> str:
        """The alert engine's store, on a cluster of its own (see ``_start_postgres``)."""
        return self.store_cluster.url("dynoscope_alerts", user="dynoscope")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    @property
    def cluster(self) -> Cluster:
        """The service's PostgreSQL."""
        return Cluster(self.directory / "postgres", self.ports["postgres"])

    @property
    def store_cluster(self) -> Cluster:
        """The alert store's PostgreSQL."""
        return Cluster(self.directory / "alerts-postgres", self.ports["alerts-postgres"])

    @property
    def running(self) -> bool:
        clusters = (self.cluster, self.store_cluster)
        return any(alive(pid) for pid in self.pids.values()) or any(c.up for c in clusters)

    def log(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    def secrets(self) -> dict[str, str]:
        lines = (self.directory / "secrets.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    # -- environments -------------------------------------------------------------------

    def base_environ(self) -> dict[str, str]:
        """What every dynoscope process of the stack shares (compose's x-dynoscope)."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "DYNOSCOPE_ENV": "production",
            "LOG_LEVEL": "INFO",
            "DATABASE_URL": self.url("dynoscope"),
            "ALERT_STORE_URL": self.store_url,
            "REDIS_URL": self.redis_url,
            "PROMETHEUS_URL": self.urls["prometheus"],
            "ALERT_RULES_PATH": str(self.rules_path),
            **self.secrets(),
        }

    @property
    def rules_path(self) -> Path:
        configured = self.config.get("rules_path")
        if configured:
            return Path(configured).resolve()
        from alerts.loader import DEFAULT_RULES

        return DEFAULT_RULES

    def api_environ(self, name: str) -> dict[str, str]:
        environ = {
            **self.base_environ(),
            "INSTANCE_ID": name,
            "DYNOSCOPE_TRACES_FILE": str(self.directory / name / "traces.jsonl"),
        }
        if self.config.get("faults_enabled"):
            environ["DYNOSCOPE_FAULTS_ENABLED"] = "true"
            environ["DYNOSCOPE_FAULT_COMMANDS"] = str(self.directory / "faults.yml")
        return {**environ, **self.config.get("api_environ", {})}

    def scheduler_environ(self, name: str) -> dict[str, str]:
        return {
            **self.base_environ(),
            "INSTANCE_ID": name,
            "HOST": "127.0.0.1",
            "METRICS_PORT": str(self.ports[name]),
            "ALERT_RECEIVERS_PATH": str(self.directory / "receivers.yml"),
            "DYNOSCOPE_TRACES_FILE": str(self.directory / name / "traces.jsonl"),
            **self.config.get("scheduler_environ", {}),
        }

    # -- processes ----------------------------------------------------------------------

    def _dynoscope(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "api.cli", *args]

    def start_instance(self, name: str) -> None:
        port = str(self.ports[name])
        argv = self._dynoscope("serve", "--host", "127.0.0.1", "--port", port, "--workers", "1")
        (self.directory / name).mkdir(exist_ok=True)
        self.pids[name] = spawn(
            argv, log=self.log(name), env=self.api_environ(name), cwd=self.directory / name
        )
        wait_http(name, f"{self.urls[name]}/readyz", self.pids[name], self.log(name))

    def start_scheduler(self, name: str) -> None:
        (self.directory / name).mkdir(exist_ok=True)
        self.pids[name] = spawn(
            self._dynoscope("alerts", "run"),
            log=self.log(name),
            env=self.scheduler_environ(name),
            cwd=self.directory / name,
        )
        wait_http(name, self.urls[name], self.pids[name], self.log(name))

    def start_redis(self) -> None:
        directory = self.directory / "redis"
        directory.mkdir(exist_ok=True)
        argv = redis_argv(redis_binary(), self.ports["redis"], directory)
        self.pids["redis"] = spawn(argv, log=self.log("redis"), env={})
        wait_ready(self.ports["redis"])

    def stop_process(self, name: str, signum: int = signal.SIGTERM) -> None:
        pid = self.pids.pop(name, None)
        if pid is not None:
            terminate(pid, signum=signum)

    # -- control (tests and fault commands) ---------------------------------------------

    def stop_postgres(self) -> None:
        """``pg_ctl stop -m immediate``: the database lost, connections cut mid-statement."""
        self.cluster.kill()

    def start_postgres(self) -> None:
        self.cluster.start()

    def stop_redis(self) -> None:
        with self.locked():
            self.stop_process("redis")

    def start_redis_again(self) -> None:
        with self.locked():
            pid = self.pids.get("redis")
            if pid is None or not alive(pid):
                self.start_redis()

    def kill_instance(self, index: int) -> None:
        """SIGKILL API instance ``index`` (0-based): no shutdown, connections dropped."""
        with self.locked():
            self.stop_process(self.instances[index], signal.SIGKILL)

    def restart_instance(self, index: int) -> None:
        name = self.instances[index]
        with self.locked():
            pid = self.pids.get(name)
            if pid is None or not alive(pid):
                self.start_instance(name)

    def fault(self, name: str, on: bool, instance: int | None = None) -> None:
        """Switch a fault of ``faults.yml`` on or off (idempotent)."""
        last = len(self.instances) - 1 if instance is None else instance
        actions: dict[tuple[str, bool], Callable[[], None]] = {
            ("db_down", True): self.stop_postgres,
            ("db_down", False): lambda: None if self.cluster.up else self.start_postgres(),
            ("redis_down", True): self.stop_redis,
            ("redis_down", False): self.start_redis_again,
            ("instance_kill", True): lambda: self.kill_instance(last),
            ("instance_kill", False): lambda: self.restart_instance(last),
        }
        if (name, on) not in actions:
            raise StackError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        actions[(name, on)]()

    def stop(self) -> None:
        """Stop everything the stack started, by process id, last started first."""
        if (self.directory / "state.json").exists():  # a fault command may have restarted some
            self.pids = Stack.load(self.directory).pids
        order = ["nginx", *self.schedulers, *self.instances, "prometheus", "alertmanager"]
        for name in [*order, "redis"]:
            self.stop_process(name)
        for cluster in (self.cluster, self.store_cluster):
            if cluster.up:
                cluster.stop()
        (self.directory / "state.json").unlink(missing_ok=True)


# -- start ------------------------------------------------------------------------------


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
    receivers = render.receivers_file(stack.urls["alertmanager"], stack.config["webhooks"])
    (directory / "receivers.yml").write_text(
        render.dump(receivers, "Receivers of the native stack's schedulers (alerts/receivers.py)")
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
        stack._dynoscope(*args),
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


# -- command line -----------------------------------------------------------------------


def describe(stack: Stack) -> str:
    rows = [
        *stack.urls.items(),
        ("secrets", f"{stack.directory / 'secrets.env'} (JWT_SECRET, ADMIN_TOKEN; mode 600)"),
        ("faults", f"{stack.directory / 'faults.yml'} (DYNOSCOPE_FAULT_COMMANDS)"),
        ("logs", f"{stack.directory / 'logs'}/"),
    ]
    return "\n".join(f"  {name:<13} {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stack.py",
        description="The production topology on loopback, no containers. Example: "
        "stack.py up --dir .stack; stack.py fault db_down on --dir .stack; stack.py down",
    )
    parser.add_argument("--dir", type=Path, default=Path(".stack"), help="the state directory")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack (says so if it already runs)")
    up.add_argument("--rules", help="rule files (default: the shipped rules)")
    up.add_argument("--scrape-interval", help="e.g. 1s (default: prometheus.yml's)")
    up.add_argument("--properties", type=int, default=500, help="demo properties to seed")
    commands.add_parser("down", help="stop everything the stack started")
    commands.add_parser("status", help="print the URLs of the running stack")
    fault = commands.add_parser("fault", help="switch a fault on or off")
    fault.add_argument("name", choices=FAULTS)
    fault.add_argument("switch", choices=["on", "off"])
    fault.add_argument("--instance", type=int, help="API instance for instance_kill (1-based)")
    for sub in commands.choices.values():
        sub.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except StackError as exc:
        print(f"stack.py: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    if args.command == "up":
        return _up(args, directory)
    stack = Stack.load(directory)
    if args.command == "down":
        stack.stop()
        print(f"stack in {directory} stopped (logs kept in {directory / 'logs'})")
    elif args.command == "status":
        state = "running" if stack.running else "not running"
        print(f"stack in {directory}: {state}\n{describe(stack)}")
    else:
        index = None if args.instance is None else args.instance - 1
        stack.fault(args.name, args.switch == "on", index)
        print(f"fault {args.name} {args.switch}")
    return 0


def _up(args: argparse.Namespace, directory: Path) -> int:
    if (directory / "state.json").exists():
        existing = Stack.load(directory)
        if existing.running:
            print(f"a stack is already running in {directory}:\n{describe(existing)}")
            print("stop it with `make stack-down`")
            return 0
    config = StackConfig(
        directory=directory,
        rules_path=args.rules,
        scrape_interval=args.scrape_interval,
        seed_properties=args.properties,
    )
    print(f"starting the stack in {directory} ...", flush=True)
    try:
        stack = start(config)
    except (StackError, RuntimeError) as exc:
        print(f"stack.py: could not start: {exc}", file=sys.stderr)
        return 1
    print(f"stack running:\n{describe(stack)}\nstop it with `make stack-down`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
