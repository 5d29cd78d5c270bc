#!/usr/bin/env bash
# Regenerates everything derived from the code and the chart:
#   crds/mapcache.yaml                        <- `mapcache crd`
#   charts/mapcache-operator/crds/mapcache.yaml <- copy of the above
#   manifests/install.yaml                    <- the chart rendered with default values
# Needs: cargo, python3 with `pip install -r scripts/requirements.txt`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -- crd > crds/mapcache.yaml
cp crds/mapcache.yaml charts/mapcache-operator/crds/mapcache.yaml
python3 scripts/check-charts.py --write
