#!/usr/bin/env bash
# make image: virtmigrate's container image, built offline and daemonless, as an OCI archive.
#
#   hack/image.sh            prints the archive's path on its last line
#
# 1. Base: a Debian 12 root filesystem made from Debian packages with mmdebstrap (python3, python3-venv,
#    libvirt0, ca-certificates; no docs, man pages or locales), cached by its package list.
# 2. Wheels: virtmigrate and its dependencies (libvirt-python compiled against this Debian 12 machine's
#    libvirt 9.0, the same library the image carries) built with the project's venv, so the image build
#    itself needs no network.
# 3. Build: `buildah bud --isolation chroot --storage-driver=vfs` of the Containerfile's targets
#    (controller, agent, launcher: one set of layers, three ENTRYPOINTs) in a private, throw-away
#    container storage, with a containers.conf that raises no rlimits (root lacks CAP_SYS_RESOURCE here)
#    and uses runc with cgroupfs (shared/notes/real-nodes.md).
# 4. Result: one OCI archive holding the three images under the references
#      virtmigrate/controller:<tag>  virtmigrate/agent:<tag>  virtmigrate/launcher:<tag>
#    (blobs shared) at $VIRTMIGRATE_CACHE/images/virtmigrate-<hash>.oci.tar. containerd imports all three
#    (`ctr -n k8s.io images import`); podman takes one at a time
#    (`podman pull oci-archive:<archive>:virtmigrate/agent:<tag>`).
#
# <hash> is the content hash of what goes into the image (Containerfile, setup.cfg, pyproject.toml,
# README.md, virtmigrate/**, this script); <tag> is that hash unless $TAG is set. When the archive for
# the current hash exists nothing is built: a warm run takes well under a second.
#
# Archives of older sources are removed once a new one is built: the newest $IMAGE_KEEP (default 4; the
# cache is shared by work trees on other branches) stay.
#
# Environment: VIRTMIGRATE_CACHE (default ~/.cache/virtmigrate), TAG, IMAGE_KEEP, DEBIAN_MIRROR
# (default http://deb.debian.org/debian), and the tools MMDEBSTRAP, BUILDAH, PYTHON (default: mmdebstrap,
# buildah, the venv's python) for machines that keep them elsewhere.
# Exit status: 0 built or cached; 3 a tool is missing (named, with the package that provides it).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${VIRTMIGRATE_CACHE:-$HOME/.cache/virtmigrate}/images"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
mmdebstrap=${MMDEBSTRAP:-mmdebstrap}
buildah=${BUILDAH:-buildah}
python=${PYTHON:-${VIRTMIGRATE_VENV:-$repo/.venv}/bin/python}
base_packages=(python3 python3-venv libvirt0 ca-certificates)
# Removed from the base after installation (dpkg's path-exclude breaks packages whose directories nest
# under an excluded one); licences (usr/share/doc/*/copyright) stay.
slim_hook='cd "$1" && find usr/share/doc -type f ! -name copyright -delete && rm -rf usr/share/man/* usr/share/info/* usr/share/locale/* usr/share/lintian/* var/cache/apt/* var/lib/apt/lists/*'
targets=(controller agent launcher)

log() { echo "hack/image.sh: $*" >&2; }

# The source's content hash: every file that goes into the image, by path and content.
source_hash() {
    (cd "$repo" && {
        printf '%s\n' Containerfile setup.cfg pyproject.toml README.md hack/image.sh
        find virtmigrate -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort
    } | while read -r f; do printf '%s\0' "$f"; sha256sum < "$f"; done) | sha256sum | cut -c1-12
}

hash=$(source_hash)
tag=${TAG:-$hash}
archive="$cache/virtmigrate-$hash.oci.tar"
if [[ -f "$archive" ]]; then
    log "virtmigrate/{controller,agent,launcher}:$tag cached in $archive"
    echo "$archive"
    exit 0
fi

missing=()
command -v "$mmdebstrap" >/dev/null 2>&1 || missing+=("$mmdebstrap (Debian package mmdebstrap)")
command -v "$buildah" >/dev/null 2>&1 || missing+=("$buildah (Debian package buildah)")
[[ -x "$python" ]] || missing+=("$python (the project's venv: run hack/setup.sh)")
if ((${#missing[@]})); then
    log "cannot build the image; not installed:"
    for m in "${missing[@]}"; do echo "  - $m" >&2; done
    exit 3
fi

t0=$(date +%s)
mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/virtmigrate-image.XXXXXX")
cleanup() {
    # vfs layers and the chroot's leftovers belong to this run only.
    [[ -d "$work/storage" ]] && "$buildah" --root "$work/storage" --runroot "$work/run" \
        --storage-driver vfs rm --all >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# 1. The Debian base, cached by suite, mirror, package list and excludes.
base_key=$(printf '%s\n' "$suite" "$mirror" "${base_packages[@]}" "$slim_hook" | sha256sum | cut -c1-12)
base="$cache/debian-$suite-$base_key.rootfs.tar"
if [[ ! -f "$base" ]]; then
    log "making the Debian $suite root filesystem with mmdebstrap (${base_packages[*]})"
    "$mmdebstrap" --format=tar --variant=minbase --include="$(IFS=,; echo "${base_packages[*]}")" \
        --customize-hook="$slim_hook" \
        "$suite" "$base.part" \
        "deb $mirror $suite main" "deb $mirror $suite-updates main" \
        "deb ${mirror%/debian}/debian-security $suite-security main" >&2
    mv "$base.part" "$base"
fi

# 2. The build context: the Containerfile, the base and the wheels (built here, so the build is offline).
ctx="$work/context"
mkdir -p "$ctx/src"
cp "$repo/Containerfile" "$ctx/"
ln "$base" "$ctx/rootfs.tar" 2>/dev/null || cp "$base" "$ctx/rootfs.tar"
cp "$repo/pyproject.toml" "$repo/setup.cfg" "$repo/README.md" "$ctx/src/"
(cd "$repo" && tar --exclude='__pycache__' --exclude='*.pyc' -cf - virtmigrate) | tar -C "$ctx/src" -xf -
log "building wheels of virtmigrate and its dependencies"
"$python" -m pip wheel --quiet --wheel-dir "$ctx/wheels" "$ctx/src" >&2
rm -rf "$ctx/src"

# 3. buildah, daemonless, in a private storage.
cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$work/containers.conf"
bh=("$buildah" --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
for target in "${targets[@]}"; do
    log "buildah bud --target $target"
    "${bh[@]}" bud --isolation chroot --layers --quiet --target "$target" \
        -t "localhost/virtmigrate/$target:$tag" -f "$ctx/Containerfile" "$ctx" >&2
done

# 4. One OCI layout with the three references, then the archive.
for target in "${targets[@]}"; do
    "${bh[@]}" push --quiet "localhost/virtmigrate/$target:$tag" "oci:$work/layout:virtmigrate/$target:$tag" >&2
done
tar -C "$work/layout" -cf "$archive.part" .
mv "$archive.part" "$archive"
ls -1t "$cache"/virtmigrate-*.oci.tar | tail -n +"$((${IMAGE_KEEP:-4} + 1))" | xargs -r rm -f --
size=$(du -m "$archive" | cut -f1)
log "built virtmigrate/{controller,agent,launcher}:$tag in $(($(date +%s) - t0)) s: $archive ($size MiB)"
echo "$archive"
