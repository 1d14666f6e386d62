#!/usr/bin/env bash
# make demo: the embedded local cluster and the seed's session, each step explained.
# A real QEMU guest moves live between two nodes; then a slowed migration is cancelled by deleting it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

run() { printf '\n\033[1;36m$ %s\033[0m\n' "$*"; "$@"; }
step() { printf '\n\033[1m### %s\033[0m\n' "$*"; }
phase() { kubectl get migration "$1" -o jsonpath='{.status.phase}'; }
wait_phase() {  # wait_phase NAME PHASE... : poll until the Migration reaches one of the phases (max 180 s)
  local name=$1; shift
  for _ in $(seq 1 900); do
    p=$(phase "$name"); for want in "$@"; do [[ $p == "$want" ]] && return 0; done; sleep 0.2
  done
  echo "Migration $name did not reach $* (phase: ${p:-none})" >&2; return 1
}

step "Set-up: Debian packages, the venv, etcd/kube-apiserver/kube-scheduler built from the Go module proxy, the test guest"
bash hack/setup.sh
KERNEL=$(bash hack/build-guest.sh)

step "Start the local cluster: the control plane, 3 nodes (each a real libvirtd), the node runner and the controller"
eval "$(virtmigrate cluster up --nodes 3)"
echo "KUBECONFIG=$KUBECONFIG"
run kubectl get nodes -L topology.kubernetes.io/zone

step "A VM: a 128 MiB QEMU guest (our own tiny kernel: RAM full of data, a heartbeat on its serial port every second)"
kubectl delete migrations --all --wait=true >/dev/null 2>&1 || true
kubectl delete vm testvm --ignore-not-found --wait=true >/dev/null 2>&1 || true
STATE_TMP=$(mktemp -d)
cat > "$STATE_TMP/testvm.yaml" <<YAML
apiVersion: kubevirt.io/v1alpha1
kind: VM
metadata:
  name: testvm
spec:
  running: true
  memory: 128Mi
  kernel: $KERNEL
  cmdline: mode=idle
YAML
run cat "$STATE_TMP/testvm.yaml"
run kubectl create -f "$STATE_TMP/testvm.yaml"
run kubectl wait vm/testvm --for=jsonpath='{.status.phase}'=Running --timeout=120s
run kubectl get vms
SRC=$(kubectl get vm testvm -o jsonpath='{.status.node}')
run kubectl get pods -o wide
sleep 2
run virtmigrate cluster serial testvm --tail 3

step "The seed's session, verbatim: migrate testvm off $SRC"
run cat examples/migration.yaml
run kubectl create -f examples/migration.yaml
run kubectl get migrations
wait_phase testvm-migration Succeeded Failed
run kubectl get migrations
run kubectl get migrations testvm-migration -o yaml
[[ $(phase testvm-migration) == Succeeded ]] || { echo "the migration failed" >&2; exit 1; }
run kubectl get vms
DST=$(kubectl get vm testvm -o jsonpath='{.status.node}')
echo "testvm moved from $SRC to $DST; its heartbeat continues there:"
sleep 2
run virtmigrate cluster serial testvm --tail 3
run kubectl delete migrations testvm-migration

step "Cancel: a second migration slowed to 1 MiB/s, deleted while it runs; the VM stays on $DST"
cat > "$STATE_TMP/slow.yaml" <<'YAML'
apiVersion: kubevirt.io/v1alpha1
kind: Migration
metadata:
  name: testvm-slow
spec:
  selector:
    name: testvm
  bandwidthMiBps: 1
YAML
run cat "$STATE_TMP/slow.yaml"
run kubectl create -f "$STATE_TMP/slow.yaml"
wait_phase testvm-slow Running
for _ in $(seq 1 75); do  # the agent reports progress every 2 s; wait for some data to have moved
  pct=$(kubectl get migration testvm-slow -o jsonpath='{.status.progress.percent}')
  [[ -n $pct && $pct != 0 ]] && break; sleep 0.2
done
run kubectl get migrations
run kubectl delete migrations testvm-slow
run kubectl get migrations
run kubectl get vms
[[ $(kubectl get vm testvm -o jsonpath='{.status.node}') == "$DST" ]] || { echo "VM not on $DST" >&2; exit 1; }
sleep 2
run virtmigrate cluster serial testvm --tail 3

step "Done. The cluster keeps running ('make cluster-down' stops it and checks nothing is left)."
echo "export KUBECONFIG=$KUBECONFIG KUBECACHEDIR=$KUBECACHEDIR"
