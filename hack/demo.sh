#!/usr/bin/env bash
# make demo: the embedded local cluster and the seed's kubectl session, each step explained.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

run() { printf '\n\033[1;36m$ %s\033[0m\n' "$*"; "$@"; }
step() { printf '\n\033[1m### %s\033[0m\n' "$*"; }

step "Set-up: Debian packages, the venv, etcd/kube-apiserver/kube-scheduler built from the Go module proxy"
bash hack/setup.sh

step "Start the local cluster (real etcd, kube-apiserver and kube-scheduler on 127.0.0.1)"
eval "$(virtmigrate cluster up)"
echo "KUBECONFIG=$KUBECONFIG"
run kubectl version

step "Install the Migration and VM APIs (CRDs) and wait until the API server serves them"
run kubectl apply -f manifests/crds/
run kubectl wait --for=condition=Established --timeout=60s crd/migrations.kubevirt.io crd/vms.kubevirt.io

step "The seed's session, verbatim"
tmp=$(mktemp -d)
cat > "$tmp/migration.yaml" <<'YAML'
apiVersion: kubevirt.io/v1alpha1
kind: Migration
metadata:
  name: testvm-migration
spec:
  selector:
    name: testvm
YAML
run cat "$tmp/migration.yaml"
run kubectl create -f "$tmp/migration.yaml"
run kubectl get migrations
run kubectl get migrations testvm-migration -o yaml
run kubectl delete migrations testvm-migration

step "Done. The cluster keeps running: 'make cluster-down' stops it."
echo "export KUBECONFIG=$KUBECONFIG"
