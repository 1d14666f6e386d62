#!/usr/bin/env bash
# Build the test guest kernel (hack/guest/guest.S) with binutils into the cache and print its path.
# Rebuilds only when the sources changed (the file name carries their hash).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${VIRTMIGRATE_CACHE:-$HOME/.cache/virtmigrate}/guest"
mkdir -p "$out"
hash="$(cat "$here/guest/guest.S" "$here/guest/link.ld" | sha256sum | cut -c1-12)"
kernel="$out/virtmigrate-guest-$hash.elf"
if [[ ! -s "$kernel" ]]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    as --32 -o "$tmp/guest.o" "$here/guest/guest.S"
    ld -m elf_i386 --no-warn-rwx-segments -T "$here/guest/link.ld" -o "$tmp/guest.elf" "$tmp/guest.o"
    mv "$tmp/guest.elf" "$kernel"
fi
ln -sfn "$(basename "$kernel")" "$out/virtmigrate-guest.elf"
echo "$kernel"
