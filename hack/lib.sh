# Sourced by hack/*.sh: paths and the venv.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIRTMIGRATE_VENV:-$REPO/.venv}"
export VIRTMIGRATE_CACHE="${VIRTMIGRATE_CACHE:-$HOME/.cache/virtmigrate}"
export VIRTMIGRATE_STATE="${VIRTMIGRATE_STATE:-$HOME/.local/state/virtmigrate}"
export PATH="$VENV/bin:$PATH"
PY="$VENV/bin/python"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
