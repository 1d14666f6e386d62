#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-scheduler and kube-controller-manager from the Go module proxy
# into a cache outside the repository, keyed by version ($CACHE/kubernetes-<version>/<binary>).
# A second run with the binaries present does nothing; a cache that lacks some of them (an older
# checkout built fewer) gets only the missing ones, in one `go build` that reuses Go's build cache.
# Prints the cache directory on its last line.
#
# Kubernetes versions are tried in order until one builds (the first served one wins):
#   v1.37.2, v1.36.3, v1.35.4, v1.34.4
set -euo pipefail

CACHE="${VIRTMIGRATE_CACHE:-$HOME/.cache/virtmigrate}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KUBE_VERSIONS="${KUBE_VERSIONS:-v1.37.2 v1.36.3 v1.35.4 v1.34.4}"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { echo "build-control-plane: $*" >&2; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # cached_go_build

etcd_steps() {
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    go build -trimpath -o etcd -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=local" \
      go.etcd.io/etcd/server/v3
}

build_etcd() { cached_go_build "$CACHE/etcd-$ETCD_VERSION" etcd "etcd $ETCD_VERSION" etcd_steps; }

staging_replaces() {
  # Every staging module k8s.io/kubernetes pins at v0.0.0, replaced by its published v0.N.P.
  local kver=$1 gomod=$2 minor
  minor="v0.${kver#v1.}"
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod" | sort -u |
    while read -r mod; do echo "replace $mod => $mod $minor"; done
}

# The Kubernetes programs the local control plane runs, built with CGO_ENABLED=0 in one go build.
KUBE_PROGRAMS=(kube-apiserver kube-scheduler kube-controller-manager)

build_kube_version() {
  local kver=$1 out="$CACHE/kubernetes-$1" missing=() p
  for p in "${KUBE_PROGRAMS[@]}"; do [[ -x "$out/$p" ]] || missing+=("$p"); done
  if ((${#missing[@]} == 0)); then
    log "kubernetes $kver cached in $out"; echo "$out"; return 0
  fi
  local work; work=$(mktemp -d)
  log "building ${missing[*]} $kver in $work"
  (
    cd "$work"
    go mod init local/kube-build >/dev/null 2>&1
    local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@$kver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -n "$gomod" ]] || { log "k8s.io/kubernetes@$kver is not served"; exit 3; }
    staging_replaces "$kver" "$gomod" >> go.mod
    go get "k8s.io/kubernetes@$kver"
    local pkgs=() m
    for m in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$m"); done
    go get "${pkgs[@]/%/@$kver}"
    local minor="${kver#v1.}"; minor="${minor%%.*}"
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=$kver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
    # One invocation for all programs: shared packages compile once, in parallel.
    mkdir -p bin
    go build -trimpath -ldflags "$ld" -o "$work/bin/" "${pkgs[@]}"
  ) >&2 || { rm -rf "$work"; return 1; }
  mkdir -p "$out" && mv "$work"/bin/* "$out/" && rm -rf "$work"
  echo "$out"
}

# The kubelet (VIRTMIGRATE_NODES=kubelet only): CGO_ENABLED=1 as upstream builds it, so a go build of
# its own; the module graph and the pure-Go packages' downloads are shared with the one above.
kubelet_steps() {
  local kver=$1 gomod minor
  gomod=$(go mod download -json "k8s.io/kubernetes@$kver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p') &&
    staging_replaces "$kver" "$gomod" >> go.mod &&
    go get "k8s.io/kubernetes@$kver" "k8s.io/kubernetes/cmd/kubelet@$kver" || return 1
  minor="${kver#v1.}"; minor="${minor%%.*}"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$kver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  CGO_ENABLED=1 go build -trimpath -ldflags "$ld" -o kubelet k8s.io/kubernetes/cmd/kubelet
}

build_kubelet() { cached_go_build "$CACHE/kubernetes-$1" kubelet "kubelet $1 (CGO_ENABLED=1)" kubelet_steps "$1"; }

build_etcd
for kver in $KUBE_VERSIONS; do
  if dir=$(build_kube_version "$kver"); then
    if [[ "${VIRTMIGRATE_NODES:-runner}" == kubelet ]]; then build_kubelet "$kver"; fi
    ln -sfn "$dir" "$CACHE/kubernetes-current"
    ln -sfn "$CACHE/etcd-$ETCD_VERSION" "$CACHE/etcd-current"
    log "using kubernetes $kver"
    "$dir/kube-apiserver" --version >&2
    echo "$CACHE"
    exit 0
  fi
  log "kubernetes $kver did not build; trying the next version"
done
log "no Kubernetes version built"; exit 1
