#!/usr/bin/env python3
"""Checks the Helm chart, the install manifest and the examples with real Helm code.

1. `helm lint --strict` (Helm's own Go library through PyPI's helm-python-sdk) with the
   default values and with non-default values, plus values.schema.json on both.
2. Renders the chart (default and non-default values) and validates every rendered object and
   the CRD with kubernetes-validate (strict: unknown fields are errors) for Kubernetes 1.37.
3. Validates crds/mapcache.yaml == the chart's copy, and every manifests/examples/*.yaml
   against the CRD's openAPIV3Schema (jsonschema).
4. Checks manifests/install.yaml is what the chart renders now (`--write` regenerates it).

Exit status 0 when everything passes; every failure is printed with the object it concerns.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "mapcache-operator"
CRD = ROOT / "crds" / "mapcache.yaml"
INSTALL = ROOT / "manifests" / "install.yaml"
EXAMPLES = ROOT / "manifests" / "examples"
KUBE_VERSION = "1.37"
INSTALL_NAMESPACE = "mapcache-system"
RELEASE = "mapcache-operator"

NON_DEFAULT_VALUES = {
    "replicaCount": 1,
    "image": {"repository": "registry.example/mapcache", "tag": "9.9.9", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"create": True, "name": "custom-sa", "annotations": {"team": "cache"}},
    "leaderElection": {"enabled": False},
    "watchNamespace": "caches",
    "logFormat": "text",
    "logLevel": "info,mapcache=debug",
    "metrics": {"port": 9000},
    "service": {"enabled": True, "type": "ClusterIP", "port": 9000},
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
    "podLabels": {"extra": "yes"},
    "podAnnotations": {"note": "x"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {}},
}

# The operator's API calls, verb by verb (src/operator/{controller,apply,observe,status,leader}.rs,
# the rollout step and the event recorder). The chart must grant exactly these: a new call
# needs a line here and in templates/clusterrole.yaml.
EXPECTED_CLUSTER_RULES = [
    (("mapcache.io",), ("mapcaches",), ("list", "watch")),
    (("mapcache.io",), ("mapcaches/status",), ("get", "patch")),
    # Server-side apply of an object that does not exist yet needs create as well as patch.
    (("apps",), ("statefulsets",), ("list", "watch", "create", "patch")),
    (("",), ("services", "configmaps"), ("list", "watch", "create", "patch")),
    (("",), ("secrets",), ("get", "list", "watch", "create", "patch")),
    (("policy",), ("poddisruptionbudgets",), ("get", "list", "watch", "create", "patch", "delete")),
    (("networking.k8s.io",), ("networkpolicies",), ("get", "list", "watch", "create", "patch", "delete")),
    (("",), ("pods",), ("list", "watch", "patch")),
    (("",), ("pods/eviction",), ("create",)),
    (("discovery.k8s.io",), ("endpointslices",), ("list",)),
    (("events.k8s.io",), ("events",), ("create", "patch")),
]
EXPECTED_LEASE_RULES = [(("coordination.k8s.io",), ("leases",), ("get", "create", "update"))]

# Kinds served by CRDs kubernetes-validate has no schema for; checked for shape here instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"FAIL {message}")


def ok(message: str) -> None:
    print(f"ok   {message}")


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(values: dict | None) -> list[dict]:
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name=RELEASE, namespace=INSTALL_NAMESPACE, is_install=True)
    objects: list[dict] = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(documents(rendered[path]))
    return objects


def lint(label: str, values: dict | None) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=INSTALL_NAMESPACE, kube_version="v1.37.0")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + [
        {"error": e} for e in report.get("errors", [])
    ]
    if problems:
        for problem in problems:
            fail(f"helm lint ({label}): {problem}")
    else:
        ok(f"helm lint --strict ({label})")
    try:
        helm.Chart.load(str(CHART)).validate_schema(values)
        ok(f"values.schema.json accepts the {label} values")
    except helm.HelmError as error:
        fail(f"values.schema.json rejects the {label} values: {error}")


def validate_object(label: str, obj: dict) -> None:
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} ({label})"
    if (obj.get("apiVersion"), obj.get("kind")) in CRD_KINDS:
        if not obj.get("spec", {}).get("endpoints"):
            fail(f"{name}: ServiceMonitor without endpoints")
        else:
            ok(f"{name}: shape checked (CRD kind, no upstream schema)")
        return
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        ok(f"{name}: valid for Kubernetes {KUBE_VERSION}")
    except kubernetes_validate.ValidationError as error:
        fail(f"{name}: {error.message} at {list(error.path)}")
    except kubernetes_validate.SchemaNotFoundError as error:
        fail(f"{name}: no schema: {error}")


def check_rendered(label: str, objects: list[dict], expect: dict[str, int]) -> None:
    kinds: dict[str, int] = {}
    for obj in objects:
        kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
        validate_object(label, obj)
    if kinds != expect:
        fail(f"rendered kinds ({label}): {kinds}, expected {expect}")
    else:
        ok(f"rendered kinds ({label}): {sorted(kinds)}")


def check_values_effect(default: list[dict], custom: list[dict]) -> None:
    def deployment(objects: list[dict]) -> dict:
        return next(o for o in objects if o["kind"] == "Deployment")

    base, tuned = deployment(default), deployment(custom)
    expectations = [
        (base["spec"]["replicas"] == 2, "default Deployment has 2 replicas"),
        ("--leader-election=true" in base["spec"]["template"]["spec"]["containers"][0]["args"],
         "default Deployment runs with --leader-election=true"),
        (base["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "mapcache-operator",
         "operator pods carry app.kubernetes.io/name=mapcache-operator (the caches' NetworkPolicy admits it)"),
        (tuned["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/mapcache:9.9.9",
         "image repository and tag are used"),
        ("--namespace=caches" in tuned["spec"]["template"]["spec"]["containers"][0]["args"],
         "watchNamespace becomes --namespace"),
        (tuned["spec"]["template"]["spec"]["serviceAccountName"] == "custom-sa", "serviceAccount.name is used"),
        (not any(o["kind"] in ("Role", "RoleBinding") for o in custom),
         "no Lease Role without leader election"),
    ]
    for passed, what in expectations:
        (ok if passed else fail)(what)

    def rules(kind: str) -> list[tuple]:
        role = next(o for o in default if o["kind"] == kind)
        return [(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"]]

    for kind, expected in (("ClusterRole", EXPECTED_CLUSTER_RULES), ("Role", EXPECTED_LEASE_RULES)):
        actual = rules(kind)
        if actual != expected:
            fail(f"{kind} rules differ from the operator's calls:\n  got      {actual}\n  expected {expected}")
        else:
            ok(f"{kind} grants exactly the operator's verbs ({len(actual)} rules)")


def crd_schema() -> dict:
    crd = documents(CRD.read_text())[0]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def to_json_schema(schema: dict) -> dict:
    """The CRD's structural schema as JSON Schema: `nullable: true` becomes a null type."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("nullable") and "type" in node:
                node["type"] = [node["type"], "null"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def check_crd_and_examples() -> None:
    crd = documents(CRD.read_text())[0]
    validate_object("crds/mapcache.yaml", crd)
    chart_crd = CHART / "crds" / "mapcache.yaml"
    if chart_crd.read_text() != CRD.read_text():
        fail("charts/mapcache-operator/crds/mapcache.yaml differs from crds/mapcache.yaml: run scripts/gen-manifests.sh")
    else:
        ok("chart CRD == crds/mapcache.yaml")
    validator = jsonschema.Draft7Validator(to_json_schema(crd_schema()))
    examples = sorted(EXAMPLES.glob("*.yaml"))
    names = [e.name for e in examples]
    if names != ["basic.yaml", "sidecar.yaml", "tuned.yaml"]:
        fail(f"examples: {names}")
    for example in examples:
        for obj in documents(example.read_text()):
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            for error in errors:
                fail(f"{example.name}: {error.message} at {'.'.join(map(str, error.path))}")
            if not errors:
                ok(f"{example.name}: valid against the MapCache schema")
    # The schema must reject what it promises to reject, or the checks above prove nothing.
    bad = {"apiVersion": "mapcache.io/v1alpha1", "kind": "MapCache", "metadata": {"name": "bad"},
           "spec": {"image": "", "engine": {"evictionPolicy": "allkeys-lfu", "port": 0}}}
    found = {e.message for e in validator.iter_errors(bad)}
    if len(found) != 3:
        fail(f"schema should reject empty image, unknown policy and port 0, found {sorted(found)}")
    else:
        ok("schema rejects an empty image, an unknown eviction policy and port 0")


def install_manifest() -> str:
    header = (
        "# mapcache operator: plain `kubectl apply -f` install (CRD + namespace + RBAC + Deployment).\n"
        "# GENERATED from charts/mapcache-operator with default values by\n"
        "# `python3 scripts/check-charts.py --write`; do not edit by hand.\n"
    )
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INSTALL_NAMESPACE}}
    crd = documents(CRD.read_text())
    objects = [namespace, *crd, *render(None)]
    body = "---\n".join(yaml.safe_dump(obj, sort_keys=False) for obj in objects)
    return header + "---\n" + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="regenerate manifests/install.yaml")
    args = parser.parse_args()

    if args.write:
        INSTALL.write_text(install_manifest())
        print(f"wrote {INSTALL.relative_to(ROOT)}")
        return 0

    lint("default", None)
    lint("non-default", NON_DEFAULT_VALUES)
    default = render(None)
    custom = render(NON_DEFAULT_VALUES)
    check_rendered("default", default, {
        "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
        "Deployment": 1, "Service": 1,
    })
    check_rendered("non-default", custom, {
        "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Deployment": 1, "Service": 1,
        "ServiceMonitor": 1, "NetworkPolicy": 1,
    })
    check_values_effect(default, custom)
    check_crd_and_examples()
    current = INSTALL.read_text() if INSTALL.exists() else ""
    if current != install_manifest():
        fail("manifests/install.yaml is stale: run `python3 scripts/check-charts.py --write`")
    else:
        ok("manifests/install.yaml matches the chart")
        for obj in documents(current):
            validate_object("install.yaml", obj)

    print(f"{len(failures)} failed" if failures else "all chart checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
