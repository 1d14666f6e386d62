#!/usr/bin/env bash
# Runs every benchmark in bench/ (each prints its figures and ratios against a baseline of the same run).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO/hack/setup.sh"
cd "$REPO"
benches=(
  "bench/bench_workqueue.py"
  "bench/bench_informer.py"
  "bench/bench_kube_http.py"
  "bench/bench_agent.py"
  "bench/bench_cluster.py"
  "bench/bench_controller.py e2e"
  "bench/bench_controller.py scale"
)
for b in "${benches[@]}"; do
  say "$b"; python $b
done
