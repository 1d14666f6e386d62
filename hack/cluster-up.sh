#!/usr/bin/env bash
# Starts the local cluster (idempotent) and prints the export KUBECONFIG=... line.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO/hack/setup.sh"
virtmigrate cluster up "$@"
