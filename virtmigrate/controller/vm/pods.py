"""The launcher pod: the pod that holds a VM's guest on its node, and the launcher's command-line contract.

Consumed by the VM controller (start mode: boot the guest from the VM spec) and by the migration
controller (receive mode: a migration target that waits for the incoming domain). Both build pods only
through `new_launcher_pod`, a pure function, so the two controllers agree on names, labels, resources
and the arguments `virtmigrate-launcher` (virtmigrate/cmd/launcher.py) parses.

Contract of the launcher container (argv = LAUNCHER_COMMAND + args):
    --mode=start|receive      start: define and start the domain; receive: wait for it to arrive
    --domain-name=<ns>_<vm>   the libvirt domain (VM.domain_name); --domain-uuid=<VM metadata.uid>
    --memory-bytes, --cpus, --kernel, --cmdline, --disk   the guest (start mode only)
    --receive-timeout=<s>     receive mode: give up (exit non-zero) when nothing arrived in time
    --shutdown-timeout=<s>    on SIGTERM: wait this long for an ACPI shutdown, then destroy
Exit codes: see virtmigrate.launcher.exitcodes (0 = the domain left by migration or a requested stop).
Readiness: the exec probe `virtmigrate-launcher --probe ...` passes while the domain runs on the pod's node
(in receive mode: once the guest has arrived and runs).
Domain report: the launcher patches its own pod's annotation `virtmigrate.kubevirt.io/domain`
(virtmigrate.api.domainfacts) with what the node's libvirt says, under ServiceAccount LAUNCHER_SERVICE_ACCOUNT.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from virtmigrate.api.constants import (
    API_VERSION,
    LABEL_PREFIX,
    ROLE_LAUNCHER,
)
from virtmigrate.api.migration import Migration
from virtmigrate.api.names import child_annotations, child_labels
from virtmigrate.api.vm import VM

JSON = dict[str, Any]
LauncherMode = Literal["start", "receive"]

LAUNCHER_COMMAND = "virtmigrate-launcher"       # console script; the image's entry point
LAUNCHER_IMAGE = "virtmigrate/launcher:0.1.0"   # never pulled by the local node runner
LAUNCHER_CONTAINER = "launcher"                 # the container's name in every launcher pod
MEMORY_OVERHEAD_BYTES = 96 << 20                # QEMU (TCG) + launcher process on top of guest RAM
CPU_REQUEST = "100m"                            # per launcher; TCG guests idle at a few percent
# Pod grace period: covers --shutdown-timeout, and a receive-mode launcher's removal of a paused incoming
# copy: up to launcher/decide.LEFTOVER_JOB_WAIT_S (10 s) for its job, then a destroy that libvirt may hold
# for its 30 s state-change-lock wait before refusing it (decide.leftover_refused) — the launcher must live
# to say so rather than be killed silent.
TERMINATION_GRACE_S = 60
SHUTDOWN_TIMEOUT_S = 5                          # ACPI shutdown wait before destroy (our test guest ignores ACPI)
RECEIVE_TIMEOUT_S = 600                         # a target that received nothing in 10 minutes gives up
PROBE_PERIOD_S = 2                              # readiness probe period
POD_NAME_MAX = 63
LAUNCHER_SERVICE_ACCOUNT = "virtmigrate-launcher"  # made in each namespace by the controllers (identities.py)
ANNOTATION_LAUNCHER_MODE = f"{LABEL_PREFIX}/launcher-mode"  # "start" or "receive", on launcher pods
ANNOTATION_PROBE = f"{LABEL_PREFIX}/probe-for"  # on a probe: the launcher pod whose guest left while unowned
LIBVIRT_SOCKET_DIR = "/var/run/libvirt"  # holds libvirt-sock (qemu:///system), on the node and in the pod
LIBVIRT_VOLUME = "libvirt"               # the hostPath volume of that folder in launcher and agent pods


@dataclass(frozen=True)
class NodeAccess:
    """What every pod the controllers create (launcher, witness, agent, abort) needs from its node: the
    image to run and the node's libvirt socket (docs/install.md, "Requirements"). Applied by
    `with_node_access` when a pod is created; the builders above stay free of installation details."""

    image: str = LAUNCHER_IMAGE
    # Node folder of libvirt's socket, mounted (hostPath, type Directory) at the same path in the pod.
    # The folder, not the socket file: a restarted libvirtd makes a new socket, which a file mount
    # would never see. "" = no mount (the pods reach libvirt over qemu+tls).
    libvirt_socket_dir: str = LIBVIRT_SOCKET_DIR
    libvirt_socket_group: int = 0  # the socket's group, added to the pods' supplementalGroups; 0 = none


def with_node_access(pod: Mapping[str, Any], access: NodeAccess) -> JSON:
    """`pod` with `access`'s image on every container and, when set, the libvirt socket folder mounted and
    its group granted (pure: `pod` is not changed; what changes is copied, the rest is shared with it)."""
    out: JSON = dict(pod)
    spec = out["spec"] = dict(out.get("spec") or {})
    containers = [dict(c) for c in spec.get("containers") or []]
    if containers:
        spec["containers"] = containers
    for c in containers:
        c["image"] = access.image
        if access.libvirt_socket_dir:
            c["volumeMounts"] = [*(c.get("volumeMounts") or []),
                                 {"name": LIBVIRT_VOLUME, "mountPath": access.libvirt_socket_dir}]
    if access.libvirt_socket_dir:
        spec["volumes"] = [*(spec.get("volumes") or []), {"name": LIBVIRT_VOLUME, "hostPath": {
            "path": access.libvirt_socket_dir, "type": "Directory"}}]
    if access.libvirt_socket_group:
        sc = spec["securityContext"] = dict(spec.get("securityContext") or {})
        sc["supplementalGroups"] = sorted({*(sc.get("supplementalGroups") or []), access.libvirt_socket_group})
    return out


def _hash5(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:5]


def launcher_pod_name(vm: VM, *, attempt: int = 0, migration_uid: str = "") -> str:
    """Deterministic name: `virt-launcher-<vm>-<5 hex>`; the suffix hashes the VM uid and the attempt
    (VM controller) or the Migration uid (migration target), so a retried create finds its own pod."""
    suffix = _hash5(vm.uid, "migration", migration_uid) if migration_uid else _hash5(vm.uid, str(attempt))
    prefix = f"virt-launcher-{vm.name}"[: POD_NAME_MAX - 6].rstrip("-.")
    return f"{prefix}-{suffix}"


def launcher_args(vm: VM, mode: LauncherMode) -> list[str]:
    """The launcher's arguments for `vm` in `mode` (pure)."""
    args = [f"--mode={mode}", f"--domain-name={vm.domain_name}", f"--domain-uuid={vm.uid}",
            f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}"]
    if mode == "start":
        s = vm.spec
        args += [f"--memory-bytes={s.memory_bytes}", f"--cpus={s.cpus}"]
        if s.kernel:
            args.append(f"--kernel={s.kernel}")
        if s.cmdline:
            args.append(f"--cmdline={s.cmdline}")
        if s.disk:
            args.append(f"--disk={s.disk}")
    else:
        args.append(f"--receive-timeout={RECEIVE_TIMEOUT_S}")
    return args


def probe_command(vm: VM, mode: LauncherMode) -> list[str]:
    return [LAUNCHER_COMMAND, "--probe", f"--mode={mode}", f"--domain-name={vm.domain_name}"]


def _field_env(name: str, path: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _node_affinity(terms: Sequence[Mapping[str, Any]]) -> JSON | None:
    if not terms:
        return None
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [dict(t) for t in terms]}}}


def new_launcher_pod(vm: VM, *, mode: LauncherMode = "start", node_selector: Mapping[str, str] | None = None,
                     affinity: Mapping[str, Any] | None = None,
                     tolerations: Sequence[Mapping[str, Any]] | None = None,
                     name: str | None = None, migration: Migration | None = None, node_name: str = "") -> JSON:
    """The desired launcher pod for `vm` (pure; the caller creates it).

    Placement defaults to the VM's own nodeSelector, required node affinity and tolerations; a migration
    passes its merged constraints instead (`affinity` is a whole pod `affinity` object). With `migration`
    the pod carries the Migration's label and, by default, a name derived from the Migration's uid.
    `node_name` binds the pod to that node without scheduling (to adopt a guest that runs there).
    """
    labels = child_labels(vm, migration, ROLE_LAUNCHER)
    if name is None:
        name = launcher_pod_name(vm, migration_uid=migration.uid if migration is not None else "")
    sel = dict(vm.spec.node_selector if node_selector is None else node_selector)
    aff = _node_affinity(vm.spec.required_terms) if affinity is None else dict(affinity)
    tols = [dict(t) for t in (vm.spec.tolerations if tolerations is None else tolerations)]
    memory = vm.spec.memory_bytes + MEMORY_OVERHEAD_BYTES
    container: JSON = {
        "name": LAUNCHER_CONTAINER,
        "image": LAUNCHER_IMAGE,
        "command": [LAUNCHER_COMMAND],
        "args": launcher_args(vm, mode),
        "env": [_field_env("POD_NAME", "metadata.name"), _field_env("POD_NAMESPACE", "metadata.namespace"),
                _field_env("NODE_NAME", "spec.nodeName"), {"name": "VM_NAME", "value": vm.name}],
        "resources": {"requests": {"memory": str(memory), "cpu": CPU_REQUEST}},
        "readinessProbe": {"exec": {"command": probe_command(vm, mode)}, "periodSeconds": PROBE_PERIOD_S,
                           "timeoutSeconds": 10, "failureThreshold": 1, "successThreshold": 1},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: JSON = {
        "restartPolicy": "Never",  # a launcher that exits means the guest is gone: the controllers decide
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "serviceAccountName": LAUNCHER_SERVICE_ACCOUNT,  # only to report its domain on its own pod
        "automountServiceAccountToken": True,
        "containers": [container],
    }
    if node_name:
        spec["nodeName"] = node_name
        tols = [*tols, {"operator": "Exists"}]  # it must go where the guest is, whatever the node's taints
    elif sel:
        spec["nodeSelector"] = sel
    if aff and not node_name:
        spec["affinity"] = aff
    if tols:
        spec["tolerations"] = tols
    meta: JSON = {"name": name, "namespace": vm.namespace, "labels": labels,
                  "annotations": {ANNOTATION_LAUNCHER_MODE: mode, **child_annotations(vm, migration)}}
    if vm.uid:
        meta["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": "VM", "name": vm.name, "uid": vm.uid,
                                    "controller": True, "blockOwnerDeletion": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def probe_pod_name(vm: VM, *, gone_pod: str, node: str) -> str:
    """The probe of `node` looking for the guest launcher pod `gone_pod` lost: deterministic, so a retried
    create finds its own pod."""
    return launcher_pod_name(vm, migration_uid=f"probe/{gone_pod}/{node}")


def new_probe_pod(vm: VM, *, gone_pod: str, node: str) -> JSON:
    """A receive-mode launcher bound to `node` (pure): it reports whether that node's libvirt holds the guest,
    and holds it if it runs there, but never starts one. The VM controller sends one to every node when the
    VM's guest left by a live migration no Migration owned (vm/decide.py), and adopts the one that finds it."""
    pod = new_launcher_pod(vm, mode="receive", name=probe_pod_name(vm, gone_pod=gone_pod, node=node), node_name=node)
    pod["metadata"]["annotations"][ANNOTATION_PROBE] = gone_pod
    return pod
