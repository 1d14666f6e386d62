#!/usr/bin/env bash
# Build virtmigrate's container image from Containerfile with the first usable engine.
#
#   hack/image.sh [extra build args...]        e.g. hack/image.sh --target agent
#
# Environment:
#   IMAGE             tag to build (default virtmigrate:<version from setup.cfg>)
#   CONTAINER_ENGINE  podman, docker or buildah: use this one only (default: try them in that order)
#
# An engine is usable when its CLI is installed AND it can build: `podman info` / `docker info`
# answer (docker needs its daemon), `buildah info` answers. The build context is a clean copy of
# what the image needs (Containerfile, pyproject.toml, setup.cfg, README.md, virtmigrate/), so no
# virtualenv, cache or state directory of the work tree is sent to the engine.
# Exit status: 0 built; 3 no usable engine (each candidate and why it was rejected is printed);
# otherwise the engine's own status.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=$(sed -n 's/^version *= *//p' "$repo/setup.cfg" | head -n1)
image=${IMAGE:-virtmigrate:${version:-latest}}

candidates=(podman docker buildah)
if [[ -n "${CONTAINER_ENGINE:-}" ]]; then
    candidates=("$CONTAINER_ENGINE")
fi

engine=""
reasons=()
for c in "${candidates[@]}"; do
    case "$c" in podman|docker|buildah) ;; *)
        echo "hack/image.sh: CONTAINER_ENGINE=$c is not one of podman, docker, buildah" >&2; exit 2 ;;
    esac
    if ! command -v "$c" >/dev/null 2>&1; then
        reasons+=("$c: not installed")
        continue
    fi
    if out=$("$c" info 2>&1 >/dev/null); then
        engine=$c
        break
    fi
    reasons+=("$c: installed at $(command -v "$c"), but '$c info' failed: $(printf '%s' "$out" | tail -n1)")
done

if [[ -z "$engine" ]]; then
    {
        echo "hack/image.sh: no usable container engine on this machine, so no image was built."
        for r in "${reasons[@]}"; do echo "  - $r"; done
        echo "Install podman (or buildah, or docker with a running daemon) and run hack/image.sh again."
    } >&2
    exit 3
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/virtmigrate-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "$repo/Containerfile" "$repo/pyproject.toml" "$repo/setup.cfg" "$repo/README.md" "$ctx/"
(cd "$repo" && tar --exclude='__pycache__' --exclude='*.pyc' -cf - virtmigrate) | tar -C "$ctx" -xf -

echo "hack/image.sh: building $image with $engine" >&2
# `buildah build`, `podman build` and `docker build` take the same arguments here.
"$engine" build -f "$ctx/Containerfile" -t "$image" "$@" "$ctx"
