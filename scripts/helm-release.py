#!/usr/bin/env python3
"""Installs, upgrades, uninstalls or shows a release of charts/mapcache-operator with Helm's own
library (PyPI's helm-python-sdk), against the cluster of a kubeconfig.

The e2e harness (e2e/src/scenario.rs) uses it to install the chart onto the real control plane,
exactly as `helm install` would: CRDs from the chart's crds/, then every template.

    helm-release.py --kubeconfig FILE --namespace NS --release NAME install [--values JSON]
    helm-release.py ... upgrade [--values JSON]
    helm-release.py ... uninstall
    helm-release.py ... status

Prints one JSON object: {"name", "namespace", "revision", "status"} of the release.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import helm_python as helm

CHART = pathlib.Path(__file__).resolve().parent.parent / "charts" / "mapcache-operator"


def describe(release: dict) -> dict:
    """The fields of a release the harness checks (helm_python returns releases as dicts)."""
    # uninstall answers {"release": {...}, "info": ...}; the others the release itself.
    release = release.get("release") or release
    return {key: release.get(key) for key in ("name", "namespace", "revision", "status")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--release", default="mapcache-operator")
    parser.add_argument("action", choices=["install", "upgrade", "uninstall", "status"])
    parser.add_argument("--values", default="{}", help="chart values as JSON")
    args = parser.parse_args()

    values = json.loads(args.values)
    config = helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)
    try:
        if args.action == "install":
            release = config.install(str(CHART), args.release, values, namespace=args.namespace,
                                     create_namespace=True, timeout=120)
        elif args.action == "upgrade":
            release = config.upgrade(str(CHART), args.release, values, namespace=args.namespace, timeout=120)
        elif args.action == "uninstall":
            release = config.uninstall(args.release, timeout=120)
        else:
            release = config.status(args.release)
    except helm.HelmError as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 1
    finally:
        config.close()
    print(json.dumps(describe(release)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
