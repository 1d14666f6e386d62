#!/usr/bin/env bash
# Runs every benchmark in bench/ (each prints its figures and ratios against a baseline of the same run).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO/hack/setup.sh"
cd "$REPO"
for b in bench/bench_*.py; do
  say "$b"; python "$b"
done
