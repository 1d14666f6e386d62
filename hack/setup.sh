#!/usr/bin/env bash
# Installs everything virtmigrate needs on a fresh Debian 12 machine, idempotently:
# Debian packages, the project's venv, the control-plane binaries (cached by version)
# and the test guest kernel. Safe to run repeatedly; a warm run takes a few seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients libvirt-dev
              pkg-config tini binutils openssl iproute2 util-linux prometheus gcc
              mmdebstrap buildah podman runc)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$VENV/.installed-$(cat "$REPO/setup.cfg" | sha1sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  say "creating the venv in $VENV"
  # a venv whose creation was interrupted has a python but no pip: make it again
  if [[ -x "$PY" ]] && ! "$PY" -m pip --version >/dev/null 2>&1; then rm -rf "$VENV"; fi
  [[ -x "$PY" ]] || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  # compat mode: a plain path entry instead of an import finder, ~20 ms less start-up per process
  "$PY" -m pip install -q -e "$REPO[dev]" --config-settings editable_mode=compat
  touch "$stamp"
fi

say "control-plane binaries"
bash "$REPO/hack/build-control-plane.sh" >/dev/null
say "prometheus (Kubernetes service discovery)"
bash "$REPO/hack/build-prometheus.sh" >/dev/null
if [[ -f "$REPO/hack/build-guest.sh" ]]; then
  say "test guest kernel"
  bash "$REPO/hack/build-guest.sh" >/dev/null
fi
