#!/usr/bin/env bash
# make test: set-up, lint, then the unit, integration and e2e tiers against the real control plane
# (started by the test session itself unless $KUBECONFIG names a running one).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"
bash hack/setup.sh
bash hack/lint.sh
say "pytest"
set +e
pytest -p no:cacheprovider -ra "${@:-tests}"
rc=$?
set -e
if [[ $rc == 5 ]]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit $rc
