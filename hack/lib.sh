# Sourced by hack/*.sh: paths and the venv.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIRTMIGRATE_VENV:-$REPO/.venv}"
export VIRTMIGRATE_CACHE="${VIRTMIGRATE_CACHE:-$HOME/.cache/virtmigrate}"
export VIRTMIGRATE_STATE="${VIRTMIGRATE_STATE:-$HOME/.local/state/virtmigrate}"
export PATH="$VENV/bin:$PATH"
PY="$VENV/bin/python"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# cached_go_build OUT BIN WHAT CMD...: unless OUT/BIN exists, run CMD... in a fresh Go module folder (its
# current directory), where it must build ./BIN, and keep that in OUT. Its output goes to stderr.
cached_go_build() {
  local out=$1 bin=$2 what=$3; shift 3
  if [[ -x "$out/$bin" ]]; then say "$what cached in $out"; return 0; fi
  local work; work=$(mktemp -d)
  say "building $what in $work"
  (cd "$work" && go mod init "local/$bin-build" >/dev/null 2>&1 && "$@") >&2 || { rm -rf "$work"; return 1; }
  mkdir -p "$out" && mv "$work/$bin" "$out/$bin" && rm -rf "$work"
}
