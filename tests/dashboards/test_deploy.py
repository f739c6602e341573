"""The deployment files hold together without a container engine: Prometheus's and
Alertmanager's own checkers accept their configs, the compose file validates against the
Compose Specification's JSON schema (vendored under compose_spec/), and every name one file
gives another (targets, services, mounts, data source uids, dashboard paths) exists."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dashboards.panels import PROMETHEUS_UID, TRACES_UID
from tests.dashboards.support import models
from tests.support.prometheus import binary

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "prometheus.yml"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
NO_SHELL = {"jaeger", "redis-exporter"}
"""Images without a shell or HTTP client: Prometheus's ``up`` and Grafana watch them."""
ONE_SHOT = {"migrate", "rules"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def scrape_targets() -> dict[str, list[str]]:
    config = yaml.safe_load(PROMETHEUS.read_text())
    return {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }


def datasources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = yaml.safe_load(
        (PROVISIONING / "datasources" / "dynoscope.yml").read_text()
    )["datasources"]
    return found


def mounts(service: str) -> dict[str, str]:
    """Container path → host path of the bind mounts of ``service``."""
    found = {}
    for volume in services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = source
    return found


@pytest.mark.prometheus
def test_promtool_accepts_prometheus_yml() -> None:
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_amtool_accepts_the_alertmanager_config() -> None:
    config = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    result = subprocess.run(
        [binary("amtool"), "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose())
    ]
    assert not errors, "\n".join(errors)


def test_compose_runs_the_whole_stack() -> None:
    names = set(services())
    wanted = {"nginx", "postgres", "redis", "prometheus", "alertmanager", "grafana", "jaeger"}
    wanted |= {"postgres-exporter", "redis-exporter", "scheduler-1", "scheduler-2"}
    wanted |= {"api-1", "api-2", "api-3"}
    assert wanted <= names
    for name in ("api-1", "api-2", "api-3"):
        assert services()[name]["environment"]["INSTANCE_ID"] == name
        assert services()[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "--enable-feature=exemplar-storage" in services()["prometheus"]["command"]


def test_the_alert_store_lives_on_a_server_of_its_own() -> None:
    # With the alert store on the service's server, stopping that server would leave no
    # scheduler holding the lease, and DatabaseUnavailable would never be sent.
    environment = services()["api-1"]["environment"]
    service_host = re.search(r"@([^:/]+)", environment["DATABASE_URL"])
    store_host = re.search(r"@([^:/]+)", environment["ALERT_STORE_URL"])
    assert service_host and store_host
    assert service_host.group(1) != store_host.group(1)
    store = services()[store_host.group(1)]
    assert store["environment"]["POSTGRES_DB"] == environment["ALERT_STORE_URL"].rsplit("/", 1)[1]
    assert store["healthcheck"]["test"]
    for name in ("scheduler-1", "scheduler-2"):
        assert services()[name]["environment"]["ALERT_STORE_URL"] == environment["ALERT_STORE_URL"]
    assert store_host.group(1) in services()["migrate"]["depends_on"]


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in services().items():
        if name in NO_SHELL | ONE_SHOT:
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_bind_mounts_and_build_files_exist() -> None:
    for name in services():
        for target, source in mounts(name).items():
            assert (ROOT / source).exists(), f"{name}: {source} (for {target}) is missing"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_prometheus_scrapes_each_replica_and_engine_directly() -> None:
    targets = scrape_targets()
    assert targets["api"] == [f"api-{n}:8000" for n in (1, 2, 3)]
    schedulers = [n for n in services() if n.startswith("scheduler-")]
    assert targets["alerts"] == [
        f"{n}:{services()[n]['environment']['METRICS_PORT']}" for n in schedulers
    ]
    for job in ("postgres", "redis"):
        (target,) = targets[job]
        assert target.split(":")[0] in services(), f"{job} scrapes a service compose lacks"
    upstream = re.findall(r"server (api-\d+):8000", (ROOT / "deploy/nginx/nginx.conf").read_text())
    assert upstream == ["api-1", "api-2", "api-3"]
    config = yaml.safe_load(PROMETHEUS.read_text())
    (alertmanager,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanager.split(":")[0] in services()


def test_prometheus_reads_the_rules_the_rules_service_exports() -> None:
    rules = services()["rules"]
    assert rules["command"][:3] == ["dynoscope", "rules", "export"]
    written = Path(rules["command"][rules["command"].index("-o") + 1])
    volume = next(v for v in rules["volumes"] if v.endswith(f":{written.parent}"))
    shared = volume.split(":")[0]
    mounted = next(v for v in services()["prometheus"]["volumes"] if v.startswith(f"{shared}:"))
    rule_dir = mounted.split(":")[1]
    (pattern,) = yaml.safe_load(PROMETHEUS.read_text())["rule_files"]
    assert Path(pattern).parent == Path(rule_dir) and Path(pattern).match(f"*{written.suffix}")


def test_data_sources_have_the_uids_the_dashboards_and_exemplars_name() -> None:
    by_uid = {source["uid"]: source for source in datasources()}
    assert by_uid[PROMETHEUS_UID]["type"] == "prometheus"
    assert by_uid[TRACES_UID]["type"] in {"jaeger", "tempo"}
    (link,) = by_uid[PROMETHEUS_UID]["jsonData"]["exemplarTraceIdDestinations"]
    assert link["datasourceUid"] in by_uid
    # The exemplar label the API writes (instrumentation/middleware.py) is `trace_id`.
    assert link["name"] == "trace_id"
    for source in datasources():
        host = source["url"].split("//")[1].split(":")[0]
        assert host in services(), f"{source['name']} points at {host}, not a compose service"
    for name, model in models().items():
        (variable,) = [v for v in model["templating"]["list"] if v["type"] == "datasource"]
        assert variable["current"]["value"] in by_uid, name
        assert by_uid[variable["current"]["value"]]["type"] == variable["query"], name


def test_dashboard_provider_loads_the_generated_files() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "dynoscope.yml").read_text())
    (entry,) = provider["providers"]
    path = entry["options"]["path"]
    assert mounts("grafana")[path] == "./dashboards/json"
    assert mounts("grafana")["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "dashboards" / "json" / Path(home).relative_to(path)).exists()
