#!/usr/bin/env bash
# make chaos: the seeded chaos campaign (tests/chaos) on the local cluster in $VIRTMIGRATE_STATE — reused
# when it runs, else started for the campaign and stopped after it.
#   make chaos                          200 rounds of seed 1
#   make chaos SEED=7 ROUNDS=50         another campaign
#   make chaos SEED=7 ROUND=37          replay round 37's plan (ROUND=3,37: several)
#   VMS=3 RECOVERY_BOUND=90 REPORT=chaos.json   pool size, seconds a round may take to recover, JSON report
#   SKIP_FAULTS=noderunner-kill         leave fault kinds out (they are part of the replay command then)
# Exit 1 when any round violated an invariant; every violation line names its seed, round, fault and timing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO/hack/setup.sh"
cd "$REPO"
say "chaos campaign: seed ${SEED:-1}, ${ROUND:+round $ROUND}${ROUND:-${ROUNDS:-200} rounds}"
exec python -m tests.chaos "$@"
