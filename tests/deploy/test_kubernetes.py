"""The Kubernetes manifests (deploy/kubernetes/) hold together without a cluster: each object
validates strictly against the Kubernetes v1.34 schemas, the ScaledObject against KEDA
2.20.2's CRD (both vendored under kubernetes_schemas/), and every name one file gives another
(selectors, ports, probes, the Secret and ConfigMap keys, the autoscaler's target and metric,
the settings the app reads, the image's command and writable paths) exists. Each check is a
function that the broken-edit tests show failing."""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from alerts.settings import AlertSettings
from api.settings import Settings
from instrumentation.settings import TelemetrySettings

ROOT = Path(__file__).parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
ALTERNATIVE = MANIFESTS / "hpa-alternative"
SCHEMAS = Path(__file__).parent / "kubernetes_schemas"
KUBERNETES = SCHEMAS / "v1.34.0-local-strict"
KEDA = SCHEMAS / "keda-2.20.2" / "scaledobject-v1alpha1.json"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SECRET = "dynoscope-secrets"
CONFIG = "dynoscope-config"
NOT_OBJECTS = {"kustomization.yaml", "prometheus-scrape.yaml", "prometheus-adapter-values.yaml"}
"""YAML files beside the manifests that are not Kubernetes objects."""
SCHEMA_OF = {
    ("v1", "ConfigMap"): "configmap-v1",
    ("v1", "Service"): "service-v1",
    ("apps/v1", "Deployment"): "deployment-apps-v1",
    ("batch/v1", "Job"): "job-batch-v1",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudget-policy-v1",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscaler-autoscaling-v2",
}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
PROMETHEUS_TRIGGER_KEYS = {"serverAddress", "query", "threshold"}
"""What KEDA's Prometheus scaler requires in a trigger's metadata (the CRD cannot say so:
metadata is a map of strings there)."""

Doc = dict[str, Any]


def load(path: Path) -> Doc:
    loaded: Doc = yaml.safe_load(path.read_text())
    return loaded


def object_files() -> list[Path]:
    """Every Kubernetes object file: the kustomization's and the HPA alternative's."""
    files = sorted(p for p in MANIFESTS.rglob("*.yaml") if p.name not in NOT_OBJECTS)
    assert files
    return files


def objects() -> dict[str, Doc]:
    return {str(path.relative_to(MANIFESTS)): load(path) for path in object_files()}


def find(kind: str, name: str) -> Doc:
    (found,) = [
        doc for doc in objects().values() if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    return found


def api() -> Doc:
    return find("Deployment", "dynoscope-api")


def alerts() -> Doc:
    return find("Deployment", "dynoscope-alerts")


def scaled_object() -> Doc:
    return load(MANIFESTS / "scaledobject.yaml")


def hpa() -> Doc:
    return load(ALTERNATIVE / "hpa.yaml")


def pod_specs() -> Iterator[tuple[str, Doc]]:
    for name, doc in objects().items():
        if doc["kind"] in {"Deployment", "Job"}:
            yield name, doc["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, Doc]]:
    for name, pod in pod_specs():
        for container in pod["containers"]:
            yield f"{name}:{container['name']}", container


def env_refs(kind: str) -> Iterator[tuple[str, Doc]]:
    """(variable, reference) for every env entry taken from a ``kind`` ref."""
    for _, container in containers():
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get(kind)
            if ref is not None:
                yield entry["name"], ref


def errors_of(validator: Any, doc: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


# --- schema validation -------------------------------------------------------------------


@functools.cache
def definitions() -> dict[str, Any]:
    found: dict[str, Any] = json.loads((KUBERNETES / "_definitions.json").read_text())["$defs"]
    return found


@functools.cache
def kubernetes_validator(schema_name: str) -> jsonschema.Draft202012Validator:
    """One kind's schema made standalone: its references to _definitions.json point into a
    copy of those definitions under its own ``$defs``."""
    text = (KUBERNETES / f"{schema_name}.json").read_text()
    schema = json.loads(text.replace('"/api/_definitions.json#/$defs/', '"#/$defs/'))
    schema["$defs"] = definitions()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def kubernetes_errors(doc: Doc) -> list[str]:
    schema_name = SCHEMA_OF.get((doc.get("apiVersion"), doc.get("kind")))
    if schema_name is None:
        return [f"no vendored schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    return errors_of(kubernetes_validator(schema_name), doc)


def strict(schema: Doc) -> Doc:
    """A CRD schema as the API server applies it with strict field validation: a field it
    does not name is an error, unless it allows any (``additionalProperties``,
    ``x-kubernetes-preserve-unknown-fields``)."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            schema["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = strict(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        schema["items"] = strict(schema["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [strict(sub) for sub in schema[key]]
    return schema


@functools.cache
def keda_validator() -> jsonschema.Draft7Validator:
    schema = strict(json.loads(KEDA.read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@functools.cache
def object_meta_validator() -> jsonschema.Draft202012Validator:
    """The CRD leaves ``metadata`` open; the API server checks it as ObjectMeta."""
    schema = {"$ref": f"#/$defs/{OBJECT_META}", "$defs": definitions()}
    return jsonschema.Draft202012Validator(schema)


def keda_errors(doc: Doc) -> list[str]:
    if (doc.get("apiVersion"), doc.get("kind")) != ("keda.sh/v1alpha1", "ScaledObject"):
        return [f"not a KEDA ScaledObject: {doc.get('apiVersion')} {doc.get('kind')}"]
    found = errors_of(keda_validator(), doc)
    found += [f"metadata/{e}" for e in errors_of(object_meta_validator(), doc.get("metadata"))]
    spec = doc.get("spec", {})
    # The CRD's x-kubernetes-validations rule (CEL), which JSON Schema cannot express.
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        found.append("spec: minReplicaCount must be less than or equal to maxReplicaCount")
    for number, trigger in enumerate(spec.get("triggers", [])):
        if trigger.get("type") == "prometheus":
            missing = PROMETHEUS_TRIGGER_KEYS - set(trigger.get("metadata", {}))
            if missing:
                found.append(f"spec/triggers/{number}/metadata: lacks {sorted(missing)}")
    return found


@pytest.mark.parametrize("name", [str(p.relative_to(MANIFESTS)) for p in object_files()])
def test_each_manifest_validates_against_its_schema(name: str) -> None:
    doc = objects()[name]
    found = keda_errors(doc) if doc["kind"] == "ScaledObject" else kubernetes_errors(doc)
    assert not found, "\n".join(found)


# --- cross-references --------------------------------------------------------------------


def container_port(container: Doc, port: int | str) -> Doc | None:
    """The container's port a probe or Service names, by name or by number."""
    for declared in container.get("ports", []):
        if port in (declared.get("name"), declared["containerPort"]):
            return declared
    return None


def probe_errors(deployment: Doc, paths: dict[str, str | None]) -> list[str]:
    """Each probe in ``paths`` exists and checks a port the container declares: over HTTP
    at the path given, or over TCP where the path is None."""
    found = []
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for probe_name, path in paths.items():
            probe = container.get(probe_name)
            if probe is None:
                found.append(f"{container['name']}: no {probe_name}")
                continue
            action = probe.get("httpGet") if path is not None else probe.get("tcpSocket")
            if action is None:
                found.append(f"{container['name']}: {probe_name} is not the expected kind")
                continue
            if path is not None and action.get("path") != path:
                found.append(f"{container['name']}: {probe_name} asks {action.get('path')}")
            if container_port(container, action.get("port")) is None:
                found.append(
                    f"{container['name']}: {probe_name} port {action.get('port')!r} is not "
                    "a port of the container"
                )
    return found


API_PROBES: dict[str, str | None] = {
    "startupProbe": "/healthz",
    "livenessProbe": "/healthz",
    "readinessProbe": "/readyz",
}
ALERTS_PROBES: dict[str, str | None] = {
    "startupProbe": None,
    "livenessProbe": None,
    "readinessProbe": None,
}


def test_probes_ask_the_health_routes_on_a_declared_port() -> None:
    # The API answers /healthz without its dependencies and /readyz with them
    # (api/routes/health.py); the engine's metrics port has no health route
    # (exporters/server.py), so its probes are TCP.
    assert not probe_errors(api(), API_PROBES)
    assert not probe_errors(alerts(), ALERTS_PROBES)


def test_services_and_budgets_select_the_pods_of_one_deployment() -> None:
    deployments = [doc for doc in objects().values() if doc["kind"] == "Deployment"]
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for name, doc in objects().items():
        if doc["kind"] not in {"Service", "PodDisruptionBudget"}:
            continue
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        chosen = [
            d
            for d in deployments
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(chosen) == 1, f"{name} selects {len(chosen)} Deployments"
        assert chosen[0]["metadata"]["name"] == doc["metadata"]["name"]
        if doc["kind"] == "Service":
            (container,) = chosen[0]["spec"]["template"]["spec"]["containers"]
            for port in doc["spec"]["ports"]:
                declared = container_port(container, port["targetPort"])
                assert declared is not None, f"{name}: targetPort {port['targetPort']}"
                assert declared["containerPort"] == port["port"]


def test_the_api_serves_http_on_8000_and_the_engine_metrics_on_9464() -> None:
    (container,) = api()["spec"]["template"]["spec"]["containers"]
    assert container_port(container, "http") == {
        "name": "http",
        "containerPort": 8000,
        "protocol": "TCP",
    }
    (engine,) = alerts()["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in engine["env"]}
    declared = container_port(engine, "metrics")
    assert declared is not None and str(declared["containerPort"]) == env["METRICS_PORT"]
    assert env["HOST"] == "0.0.0.0"
    assert alerts()["spec"]["replicas"] == 2


def test_the_autoscalers_size_the_api_deployment_from_instances_needed() -> None:
    so, alternative = scaled_object(), hpa()
    for target in (so["spec"]["scaleTargetRef"], alternative["spec"]["scaleTargetRef"]):
        assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "dynoscope-api"}
    # The autoscaler owns the count; a count in the Deployment would be re-applied over it.
    assert "replicas" not in api()["spec"]
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 20)
    assert (alternative["spec"]["minReplicas"], alternative["spec"]["maxReplicas"]) == (2, 20)
    (trigger,) = so["spec"]["triggers"]
    # AverageValue with threshold 1: the HPA asks for ceil(instances needed / 1) pods.
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["threshold"] == "1"
    assert trigger["metadata"]["query"] == "max(dynoscope:instances_needed)"
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    (metric,) = alternative["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    behaviours = (
        so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
        alternative["spec"]["behavior"],
    )
    assert behaviours[0] == behaviours[1]
    assert behaviours[0]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_only_one_autoscaler_is_applied() -> None:
    kustomization = load(MANIFESTS / "kustomization.yaml")
    listed = kustomization["resources"]
    top_level = sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name not in NOT_OBJECTS)
    assert sorted(listed) == top_level
    assert "scaledobject.yaml" in listed
    assert not any(item.startswith("hpa-alternative") for item in listed)


def test_the_adapter_serves_the_metric_the_hpa_reads() -> None:
    values = load(ALTERNATIVE / "prometheus-adapter-values.yaml")
    (metric,) = hpa()["spec"]["metrics"]
    name = metric["external"]["metric"]["name"]
    (rule,) = [r for r in values["rules"]["external"] if r["name"]["as"] == name]
    assert re.fullmatch(rule["name"]["matches"], "dynoscope:instances_needed")
    assert "dynoscope:instances_needed" in rule["seriesQuery"]
    assert "<<.Series>>" in rule["metricsQuery"]
    # The rule is one figure for the Deployment, with no namespace label to narrow it by.
    assert rule["resources"] == {"namespaced": False}


def test_everything_queries_the_prometheus_the_engines_read() -> None:
    config = load(MANIFESTS / "configmap.yaml")["data"]
    (trigger,) = scaled_object()["spec"]["triggers"]
    adapter = load(ALTERNATIVE / "prometheus-adapter-values.yaml")["prometheus"]
    assert trigger["metadata"]["serverAddress"] == config["PROMETHEUS_URL"]
    assert f"{adapter['url']}:{adapter['port']}" == config["PROMETHEUS_URL"]


def test_prometheus_scrapes_each_pod_by_its_labels_and_port_name() -> None:
    scrape = load(MANIFESTS / "prometheus-scrape.yaml")["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    # `dynoscope report` reads job="api" (ops/report.py), as the compose stack names it.
    assert set(jobs) == {"api", "alerts"}
    for job_name, deployment, port in (("api", api(), "http"), ("alerts", alerts(), "metrics")):
        relabel = jobs[job_name]["relabel_configs"]
        (keep,) = [r for r in relabel if r.get("action") == "keep"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        # Prometheus's meta labels spell each pod label with _ for every other character.
        meta = {
            "__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", key): value
            for key, value in labels.items()
        }
        meta["__meta_kubernetes_pod_container_port_name"] = port
        assert keep["regex"] == ";".join(meta[source] for source in keep["source_labels"])
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container_port(container, port) is not None
        (instance,) = [r for r in relabel if r.get("target_label") == "instance"]
        assert instance["source_labels"] == ["__meta_kubernetes_pod_name"]


# --- the Secret, the ConfigMap and the settings ------------------------------------------


def documented_secret_keys() -> set[str]:
    """The keys the `kubectl create secret` command of docs/operations.md gives the Secret."""
    readme = (ROOT / "docs" / "operations.md").read_text()
    command = re.search(
        rf"kubectl[^\n]*create secret generic {SECRET}((?:[^\n]*\\\n)*[^\n]*)", readme
    )
    assert command, f"docs/operations.md does not show how to create {SECRET}"
    return {
        word.split("=")[1]
        for word in shlex.split(command.group(1).replace("\\\n", " "))
        if word.startswith("--from-literal=")
    }


def secret_errors(docs: dict[str, Doc]) -> list[str]:
    found = []
    for name, doc in docs.items():
        if doc["kind"] == "Secret":
            found.append(f"{name} ships a Secret: create it with kubectl instead")
    documented = documented_secret_keys()
    for name, doc in docs.items():
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    if entry["name"] in documented:
                        found.append(f"{name}: {entry['name']} is not taken from the Secret")
                    continue
                if ref["name"] != SECRET:
                    found.append(f"{name}: {entry['name']} from secret {ref['name']}")
                if ref["key"] not in documented:
                    found.append(f"{name}: key {ref['key']} is not in docs/operations.md's command")
    return found


def test_secrets_come_from_the_documented_secret_only() -> None:
    assert not secret_errors(objects())
    used = {ref["key"] for _, ref in env_refs("secretKeyRef")}
    assert used == documented_secret_keys()


def test_config_map_keys_exist() -> None:
    data = load(MANIFESTS / "configmap.yaml")["data"]
    refs = list(env_refs("configMapKeyRef"))
    assert refs
    for variable, ref in refs:
        assert ref["name"] == CONFIG and ref["key"] in data, variable
    assert {ref["key"] for _, ref in refs} == set(data), "a ConfigMap key nothing reads"


def settings_read() -> set[str]:
    """Every variable the service, the engine and the instrumentation read."""
    names = set()
    for model in (Settings, AlertSettings, TelemetrySettings):
        for field in model.model_fields.values():
            if isinstance(field.validation_alias, str):
                names.add(field.validation_alias)
    return names


def test_every_variable_set_is_a_setting_the_app_reads() -> None:
    read = settings_read()
    assert {"DATABASE_URL", "ALERT_STORE_URL", "INSTANCE_ID", "JWT_SECRET"} <= read
    for name, container in containers():
        unknown = {entry["name"] for entry in container.get("env", [])} - read
        assert not unknown, f"{name} sets {sorted(unknown)}, which nothing reads"
    assert set(load(MANIFESTS / "configmap.yaml")["data"]) <= read


def test_production_mode_has_what_it_refuses_to_start_without() -> None:
    (container,) = api()["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DYNOSCOPE_ENV"]["value"] == "production"
    assert "optional" not in env["JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert env["INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The engine and the migration sign nothing: no production mode, no signing key.
    for name, other in containers():
        if not name.startswith("api-deployment"):
            names = {e["name"] for e in other["env"]}
            assert not names & {"DYNOSCOPE_ENV", "JWT_SECRET"}, name


# --- the image ---------------------------------------------------------------------------


def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_the_commands_are_the_images() -> None:
    found = re.search(r"^CMD (\[.*\])$", dockerfile(), re.MULTILINE)
    assert found
    cmd = json.loads(found.group(1))
    # `command` replaces ENTRYPOINT; with none in the image, it is the whole command line.
    assert not re.search(r"^ENTRYPOINT", dockerfile(), re.MULTILINE)
    commands = {name: c["command"] for name, c in containers()}
    assert commands["api-deployment.yaml:api"] == [*cmd, "--workers", "2"]
    assert commands["alerts-deployment.yaml:alerts"] == ["dynoscope", "alerts", "run"]
    assert commands["migrate-job.yaml:migrate"] == ["dynoscope", "db", "upgrade"]
    assert {c["image"] for _, c in containers()} == {"dynoscope:latest"}


def test_the_image_holds_every_package_the_commands_import() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(
        r"\[tool\.setuptools\.packages\.find\]\ninclude = \[(.*?)\]", pyproject, re.S
    )
    assert include
    packages = {p.rstrip("*") for p in re.findall(r'"([^"]+)"', include.group(1))}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile(), re.MULTILINE))
    assert packages <= copied, f"deploy/Dockerfile leaves out {sorted(packages - copied)}"


def test_containers_run_as_the_images_user_on_a_read_only_root() -> None:
    found = re.search(r"useradd[^\n]*--uid (\d+)", dockerfile())
    assert found
    uid = int(found.group(1))
    for name, pod in pod_specs():
        context = pod["securityContext"]
        # runAsNonRoot alone fails: the image's USER is a name the kubelet cannot check.
        assert context["runAsNonRoot"] is True and context["runAsUser"] == uid, name
        assert pod["automountServiceAccountToken"] is False, name
        mounts: dict[str, str] = {}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            mounts |= {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        scratch = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        # Python's temporary files, and serve's private metric directory for its workers.
        assert mounts.get("/tmp") in scratch, f"{name}: /tmp is not writable"


def test_the_api_writes_only_to_its_scratch_volumes() -> None:
    pod = api()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    traces = Path(env["DYNOSCOPE_TRACES_FILE"])
    assert traces.is_absolute() and mounts.get(str(traces.parent)) in scratch
    # A fixed multiprocess directory would outlive a container restart in an emptyDir.
    assert "PROMETHEUS_MULTIPROC_DIR" not in env


def test_graceful_shutdown_fits_the_grace_period() -> None:
    pod = api()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert int(sleep[1]) + 20 <= pod["terminationGracePeriodSeconds"]


# --- the checks fail on broken edits ------------------------------------------------------


def edit(doc: Doc, change: Callable[[Doc], object]) -> Doc:
    broken = copy.deepcopy(doc)
    change(broken)
    return broken


def api_container(doc: Doc) -> Doc:
    container: Doc = doc["spec"]["template"]["spec"]["containers"][0]
    return container


def http_probe(doc: Doc, probe: str) -> Doc:
    action: Doc = api_container(doc)[probe]["httpGet"]
    return action


def env_entry(doc: Doc, name: str) -> Doc:
    (entry,) = [e for e in api_container(doc)["env"] if e["name"] == name]
    return entry


BROKEN_KUBERNETES = {
    "misspelled replicas": lambda d: d["spec"].update(replica=3),
    "misspelled probe field": lambda d: api_container(d).update(readinesProbe={}),
    "port as text": lambda d: api_container(d)["ports"][0].update(containerPort="8000"),
    "unknown env source": lambda d: env_entry(d, "INSTANCE_ID")["valueFrom"].update(
        podRef={"fieldPath": "metadata.name"}
    ),
    "memory as a list": lambda d: api_container(d)["resources"]["limits"].update(memory=[1]),
}


@pytest.mark.parametrize("change", BROKEN_KUBERNETES.values(), ids=BROKEN_KUBERNETES.keys())
def test_a_broken_deployment_fails_validation(change: Callable[[Doc], object]) -> None:
    assert not kubernetes_errors(api())
    assert kubernetes_errors(edit(api(), change))


def hpa_config(doc: Doc) -> Doc:
    config: Doc = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
    return config


BROKEN_KEDA = {
    "trigger without its query": lambda d: d["spec"]["triggers"][0]["metadata"].pop("query"),
    "trigger without metadata": lambda d: d["spec"]["triggers"][0].pop("metadata"),
    "HPA's field name": lambda d: d["spec"].update(maxReplicas=20),
    "threshold as a number": lambda d: d["spec"]["triggers"][0]["metadata"].update(threshold=1),
    "minimum over maximum": lambda d: d["spec"].update(minReplicaCount=30),
    "misspelled behaviour": lambda d: hpa_config(d).update(behaviour={}),
    "unknown metadata field": lambda d: d["metadata"].update(label={}),
}


@pytest.mark.parametrize("change", BROKEN_KEDA.values(), ids=BROKEN_KEDA.keys())
def test_a_broken_scaled_object_fails_validation(change: Callable[[Doc], object]) -> None:
    assert not keda_errors(scaled_object())
    assert keda_errors(edit(scaled_object(), change))


BROKEN_PROBES = {
    "text port that names no port": lambda d: http_probe(d, "readinessProbe").update(port="8000"),
    "number of no port": lambda d: http_probe(d, "livenessProbe").update(port=8080),
    "liveness on readiness": lambda d: http_probe(d, "livenessProbe").update(path="/readyz"),
    "no startup probe": lambda d: api_container(d).pop("startupProbe"),
}


@pytest.mark.parametrize("change", BROKEN_PROBES.values(), ids=BROKEN_PROBES.keys())
def test_a_broken_probe_fails_the_check(change: Callable[[Doc], object]) -> None:
    assert not probe_errors(api(), API_PROBES)
    broken = edit(api(), change)
    assert probe_errors(broken, API_PROBES)


def test_a_secret_inlined_or_from_elsewhere_fails_the_check() -> None:
    docs = objects()
    assert not secret_errors(docs)
    inlined = copy.deepcopy(docs)
    jwt = env_entry(inlined["api-deployment.yaml"], "JWT_SECRET")
    jwt.pop("valueFrom")
    jwt["value"] = "x" * 32
    assert secret_errors(inlined)
    elsewhere = copy.deepcopy(docs)
    env_entry(elsewhere["api-deployment.yaml"], "ADMIN_TOKEN")["valueFrom"]["secretKeyRef"][
        "name"
    ] = "other"
    assert secret_errors(elsewhere)
    shipped = {**docs, "secret.yaml": {"kind": "Secret", "metadata": {"name": SECRET}}}
    assert secret_errors(shipped)
