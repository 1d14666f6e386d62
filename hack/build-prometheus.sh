#!/usr/bin/env bash
# Builds the local cluster's Prometheus from the Go module proxy into a cache outside the repository,
# keyed by version ($CACHE/prometheus-<version>/prometheus), and points $CACHE/prometheus-current at it.
# A second run with the binary present does nothing. Prints the binary's path on its last line.
#
# Why not Debian's prometheus package (installed for promtool): Debian builds it without Kubernetes
# service discovery ("Kubernetes support has been completely removed", its NEWS.Debian; a config with
# kubernetes_sd_configs is refused: "field kubernetes_sd_configs not found in type config.ScrapeConfig").
# Upstream's own build tags keep only what the local cluster uses: `remove_all_sd` drops every service
# discovery plugin, `enable_kubernetes_sd` brings Kubernetes back (plugins/plugin_kubernetes.go).
# The web UI's assets are not in the module (upstream builds them with npm), so this binary serves the
# HTTP API only; the README says how to look at it.
#
# Versions are tried in order until one builds: Prometheus 3.x is published as module v0.3XX.Y.
set -euo pipefail

CACHE="${VIRTMIGRATE_CACHE:-$HOME/.cache/virtmigrate}"
PROMETHEUS_VERSIONS="${PROMETHEUS_VERSIONS:-v0.316.0 v0.315.1}"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # say, cached_go_build

prometheus_steps() {
  local ver=$1 release="3.${1#v0.3}"  # v0.316.0 -> 3.16.0
  local ld="-s -w -X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Branch=module-proxy -X github.com/prometheus/common/version.Revision=$ver"
  go get "github.com/prometheus/prometheus/cmd/prometheus@$ver" &&
    go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "$ld" -o prometheus \
      github.com/prometheus/prometheus/cmd/prometheus
}

for ver in $PROMETHEUS_VERSIONS; do
  if cached_go_build "$CACHE/prometheus-$ver" prometheus "prometheus $ver (Kubernetes service discovery only)" \
       prometheus_steps "$ver"; then
    ln -sfn "$CACHE/prometheus-$ver" "$CACHE/prometheus-current"
    "$CACHE/prometheus-current/prometheus" --version 2>&1 | head -1 >&2
    echo "$CACHE/prometheus-current/prometheus"
    exit 0
  fi
  say "prometheus $ver did not build; trying the next version"
done
say "no Prometheus version built"; exit 1
