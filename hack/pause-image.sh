#!/usr/bin/env bash
# The local kubelets' pod sandbox image, virtmigrate/pause:<hash>, as an OCI archive in the cache:
# hack/pause/pause.c compiled static with gcc, packed by buildah (chroot isolation, vfs, private storage).
# Rebuilt only when hack/pause/ changes. Prints the archive's path on its last line.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${VIRTMIGRATE_CACHE:-$HOME/.cache/virtmigrate}/images"
hash=$(cat "$repo/hack/pause/pause.c" "$repo/hack/pause/Containerfile" "$0" | sha256sum | cut -c1-12)
archive="$cache/pause-$hash.oci.tar"
if [[ -f "$archive" ]]; then echo "$archive"; exit 0; fi
mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/virtmigrate-pause.XXXXXX")
bh=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
trap '"${bh[@]}" rm --all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' > "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
mkdir "$work/ctx"
gcc -static -Os -s -o "$work/ctx/pause" "$repo/hack/pause/pause.c"
cp "$repo/hack/pause/Containerfile" "$work/ctx/"
"${bh[@]}" bud --isolation chroot --quiet -t "localhost/virtmigrate/pause:$hash" "$work/ctx" >&2
"${bh[@]}" push --quiet "localhost/virtmigrate/pause:$hash" "oci:$work/layout:virtmigrate/pause:$hash" >&2
tar -C "$work/layout" -cf "$archive.part" . && mv "$archive.part" "$archive"
echo "$archive"
