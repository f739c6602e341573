"""A running native stack as its state file describes it, and what can be done to it.

>>> stack = Stack.load(Path(".stack"))  # doctest: +SKIP
>>> stack.urls["prometheus"], stack.pids["api-1"]  # doctest: +SKIP
('http://127.0.0.1:40311', 81234)
>>> stack.fault("redis_down", on=True)  # doctest: +SKIP

Any process that can read the stack's directory can act on it: the stack program's ``fault``
and ``down`` subcommands, and the tests, which started it. Changes of processes hold a lock
on the directory and write the new process ids back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy.native.postgres import Cluster
from deploy.native.processes import alive, spawn, terminate, wait_http
from deploy.native.redis_server import redis_argv, redis_binary, wait_ready

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
    # The receivers' grouping (group_by, group_wait, group_interval); default Alertmanager's.
    grouping: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["directory"] = str(self.directory)
        data["webhooks"] = sorted(self.webhooks)  # URLs are secrets: kept in secrets.env
        return data


EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. A port from that range (what
    binding port 0 gives) can be taken, between being picked and being listened on, as the
    source port of any outgoing connection, and the stack's processes make many: the one
    meant to listen there would fail to start. Each port is handed out once per process."""
    try:
        low = int(EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    start = max(1024, low - 10_000)
    for _ in range(500):
        port = random.randrange(start, low)  # noqa: S311 (not a secret)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # every try taken: the kernel's choice, as before
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


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
        from alerts.rules.loader import DEFAULT_RULES

        return DEFAULT_RULES

    def api_environ(self, name: str) -> dict[str, str]:
        environ = {
            **self.base_environ(),
            "INSTANCE_ID": name,
            "DYNOSCOPE_TRACES_FILE": str(self.directory / name / "traces.jsonl"),
            # nginx, on this host, says who the client is (X-Forwarded-For).
            "TRUSTED_PROXIES": "127.0.0.1",
        }
        if self.config.get("faults_enabled"):
            environ["DYNOSCOPE_FAULTS_ENABLED"] = "true"
            # The stack exists to be broken on purpose, in production mode like the real one.
            environ["DYNOSCOPE_FAULTS_IN_PRODUCTION"] = "true"
            environ["DYNOSCOPE_FAULT_COMMANDS"] = str(self.directory / "faults.yml")
        return {**environ, **self.config.get("api_environ", {})}

    def scheduler_environ(self, name: str) -> dict[str, str]:
        return {
            **self.base_environ(),
            "INSTANCE_ID": name,
            "HOST": "127.0.0.1",
            "METRICS_PORT": str(self.ports[name]),
            "ALERT_PEERS": ",".join(
                f"http://127.0.0.1:{self.ports[other]}"
                for other in self.schedulers
                if other != name
            ),
            "ALERT_RECEIVERS_PATH": str(self.directory / "receivers.yml"),
            "DYNOSCOPE_TRACES_FILE": str(self.directory / name / "traces.jsonl"),
            **self.config.get("scheduler_environ", {}),
        }

    # -- processes ----------------------------------------------------------------------

    def dynoscope_argv(self, *args: str) -> list[str]:
        """``dynoscope ARGS`` with this interpreter (the venv's, as make runs the stack)."""
        return [sys.executable, "-m", "dynoscope", *args]

    def start_instance(self, name: str) -> None:
        port = str(self.ports[name])
        argv = self.dynoscope_argv("serve", "--host", "127.0.0.1", "--port", port, "--workers", "1")
        (self.directory / name).mkdir(exist_ok=True)
        self.pids[name] = spawn(
            argv, log=self.log(name), env=self.api_environ(name), cwd=self.directory / name
        )
        wait_http(name, f"{self.urls[name]}/readyz", self.pids[name], self.log(name))

    def start_scheduler(self, name: str) -> None:
        (self.directory / name).mkdir(exist_ok=True)
        self.pids[name] = spawn(
            self.dynoscope_argv("alerts", "run"),
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
