#!/usr/bin/env bash
# Renders the kustomize base (manifests/) with the venv's kubectl, as `kubectl apply -k` would.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
kubectl kustomize "$REPO/manifests"
