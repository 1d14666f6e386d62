#!/usr/bin/env bash
# Build virtmigrate's container images from Containerfile with the first usable engine.
#
#   hack/image.sh [extra build args...]        e.g. hack/image.sh --build-arg PYTHON_IMAGE=...
#
# One build, three tags, one per Containerfile target (same layers, different ENTRYPOINT):
#   ${IMAGE_PREFIX}controller:${TAG}   the Deployment in manifests/deployment.yaml
#   ${IMAGE_PREFIX}agent:${TAG}        agent pods (virtmigrate/controller/migration/pods.py AGENT_IMAGE)
#   ${IMAGE_PREFIX}launcher:${TAG}     launcher pods (virtmigrate/controller/vm/pods.py LAUNCHER_IMAGE)
#
# Environment:
#   IMAGE_PREFIX      repository prefix (default "virtmigrate/"; e.g. "registry.example.com/virtmigrate/")
#   TAG               tag (default: the version in setup.cfg)
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
prefix=${IMAGE_PREFIX:-virtmigrate/}
tag=${TAG:-${version:-latest}}

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

# `buildah build`, `podman build` and `docker build` take the same arguments here; the second and
# third builds reuse the first one's cached layers.
for target in controller agent launcher; do
    echo "hack/image.sh: building ${prefix}${target}:${tag} (target $target) with $engine" >&2
    "$engine" build -f "$ctx/Containerfile" --target "$target" -t "${prefix}${target}:${tag}" "$@" "$ctx"
done
