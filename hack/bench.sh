#!/usr/bin/env bash
# Runs every benchmark in bench/ (each prints its figures and ratios against a baseline of the same run).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO/hack/setup.sh"
cd "$REPO"
# The baseline tree for the benches that compare two trees: main's last commit (BASELINE=DIR to choose).
if [ -z "${BASELINE:-}" ]; then
  BASELINE="$(mktemp -d)"; trap 'rm -rf "$BASELINE"' EXIT
  git -C "$REPO" archive "${BASELINE_REF:-main}" | tar -x -C "$BASELINE"
fi
# The e2e and pod-start benches use the local cluster at $VIRTMIGRATE_STATE (started if needed).
benches=(
  "bench/bench_workqueue.py"
  "bench/bench_informer.py"
  "bench/bench_kube_http.py"
  "bench/bench_agent.py"
  "bench/bench_cluster.py"
  "bench/bench_e2e.py"
  "bench/bench_podstart.py --baseline $BASELINE"
  "bench/bench_controller.py scale"
)
for b in "${benches[@]}"; do
  say "$b"; python $b
done
