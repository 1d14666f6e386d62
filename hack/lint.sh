#!/usr/bin/env bash
# ruff, mypy --strict on the package, and the layer rules (import-linter, contracts in setup.cfg).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"
say "ruff"; ruff check virtmigrate tests bench
say "mypy --strict"; mypy virtmigrate
say "import-linter"; lint-imports setup.cfg
