"""Re-vendor the Kubernetes JSON schemas the manifest tests need, from kubernetes-validate.

    pip download --no-deps --dest /tmp/kv kubernetes-validate==1.37.0
    unzip -q -d /tmp/kv /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl
    python tests/deploy/kubernetes_schemas/vendor.py /tmp/kv v1.34.0

Copies each kind's schema unchanged, and of ``_definitions.json`` only the definitions those
schemas reach (each unchanged), so the test data stays a few hundred kB instead of 1.5 MB.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

KINDS = (
    "configmap-v1",
    "deployment-apps-v1",
    "horizontalpodautoscaler-autoscaling-v2",
    "job-batch-v1",
    "poddisruptionbudget-policy-v1",
    "service-v1",
)
HERE = Path(__file__).parent
REFERENCE = re.compile(r'"(?:/api/_definitions\.json)?#/\$defs/([^"]+)"')


def reachable(definitions: dict[str, object], roots: set[str]) -> set[str]:
    """Every definition ``roots`` refer to, directly or through others."""
    seen: set[str] = set()
    todo = set(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= set(REFERENCE.findall(json.dumps(definitions[name]))) - seen
    return seen


def main(unpacked: Path, version: str) -> None:
    source = unpacked / "kubernetes_validate" / "kubernetes-json-schema" / f"{version}-local-strict"
    target = HERE / f"{version}-local-strict"
    target.mkdir(exist_ok=True)
    roots: set[str] = set()
    for kind in KINDS:
        text = (source / f"{kind}.json").read_text()
        (target / f"{kind}.json").write_text(text)
        roots |= set(REFERENCE.findall(text))
    everything = json.loads((source / "_definitions.json").read_text())
    kept = reachable(everything["$defs"], roots)
    reduced = {key: value for key, value in everything.items() if key != "$defs"}
    reduced["$defs"] = {name: everything["$defs"][name] for name in sorted(kept)}
    (target / "_definitions.json").write_text(json.dumps(reduced, indent=2) + "\n")
    print(f"{len(KINDS)} kinds, {len(kept)} of {len(everything['$defs'])} definitions")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
