#!/usr/bin/env bash
# Stops exactly what cluster-up started and removes its state.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ -x "$VENV/bin/virtmigrate" ]] || { echo "no venv: nothing was started" >&2; exit 0; }
virtmigrate cluster down
