"""Pure builders of a Migration's pods: child names, the agent pod, the target launcher pod.

Fed by: migration/execute.py with the Migration and VM views, the target Node object, the merged node
constraints (virtmigrate.scheduler) and the controller's policy defaults (config.py).
Consumed by: migration/execute.py, which creates the returned objects (AlreadyExists is normal: names
are deterministic, derived from the Migration's uid, so a restarted controller finds its own pods).

The agent's command-line contract is virtmigrate/agent/settings.py (`virtmigrate-agent --help`).
The target launcher pod is built by the VM controller's `new_launcher_pod` in receive mode, so
both controllers agree on names, labels, resources and arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from virtmigrate.api.constants import (
    ANNOTATION_LIBVIRT_URI,
    ANNOTATION_MIGRATION_ADDRESS,
    API_VERSION,
    FINALIZER_AGENT,
    LABEL_PREFIX,
    ROLE_ABORT,
    ROLE_AGENT,
)
from virtmigrate.api.migration import Migration, MigrationPolicy
from virtmigrate.api.names import child_annotations, child_labels
from virtmigrate.api.vm import VM
from virtmigrate.controller.vm import pods as vmpods
from virtmigrate.scheduler import Merged

JSON = dict[str, Any]

AGENT_COMMAND = "virtmigrate-agent"        # console script; the image's entry point
AGENT_IMAGE = "virtmigrate/agent:0.1.0"    # never pulled by the local node runner
AGENT_CONTAINER = "agent"
AGENT_GRACE_S = 30                         # SIGTERM -> abortJob -> verify: seconds before SIGKILL
POD_NAME_MAX = 63
ANNOTATION_WITNESS = f"{LABEL_PREFIX}/witness"  # "source" or "target", on witness launcher pods


@dataclass(frozen=True)
class PolicyDefaults:
    """The cluster's migration policy (controller configuration); a Migration may override each field."""

    bandwidth_mib_s: int = 0                   # 0 = unlimited
    completion_timeout_per_gib_s: int = 150
    progress_timeout_s: int = 150
    max_downtime_ms: int = 500
    allow_post_copy: bool = False
    allow_auto_converge: bool = False
    allow_pause: bool = False


def compute_policy(defaults: PolicyDefaults, overrides: MigrationPolicy) -> PolicyDefaults:
    """The effective policy: each Migration field that is set wins over the cluster default."""
    changes = {k: v for k, v in vars(overrides).items() if v is not None}
    return replace(defaults, **changes)


def _hash5(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:5]


def agent_pod_name(migration: Migration) -> str:
    """`virt-migration-<migration>-<5 hex of uid>`: deterministic, unique per Migration object."""
    prefix = f"virt-migration-{migration.name}"[: POD_NAME_MAX - 6].rstrip("-.")
    return f"{prefix}-{_hash5(migration.uid, 'agent')}"


def abort_pod_name(migration: Migration) -> str:
    """`virt-abort-<migration>-<5 hex of uid>`: the short-lived pod that aborts an orphaned job."""
    prefix = f"virt-abort-{migration.name}"[: POD_NAME_MAX - 6].rstrip("-.")
    return f"{prefix}-{_hash5(migration.uid, 'abort')}"


def target_pod_name(migration: Migration, vm: VM) -> str:
    """The target launcher pod's name, as the VM controller's builder derives it."""
    return vmpods.launcher_pod_name(vm, migration_uid=migration.uid)


@dataclass(frozen=True)
class Destination:
    libvirt_uri: str     # how the source daemon reaches the target's libvirtd (peer to peer)
    migration_uri: str   # where the migration data goes ("" lets libvirt choose)


def node_internal_ip(node: Mapping[str, Any]) -> str:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP":
            return str(addr.get("address", ""))
    return ""


def compute_destination(node: Mapping[str, Any], *, uri_template: str, migration_uri_template: str) -> Destination:
    """From the target Node's annotations, else the templates filled with its InternalIP ({ip})."""
    ann = (node.get("metadata") or {}).get("annotations") or {}
    ip = node_internal_ip(node)
    uri = ann.get(ANNOTATION_LIBVIRT_URI) or (uri_template.format(ip=ip) if ip else "")
    mig = ann.get(ANNOTATION_MIGRATION_ADDRESS) or (migration_uri_template.format(ip=ip) if ip else "")
    if mig and "://" not in mig:
        mig = f"tcp://{mig}"
    return Destination(libvirt_uri=str(uri), migration_uri=str(mig))


def agent_args(vm: VM, migration: Migration, dest: Destination, policy: PolicyDefaults, *,
               report_progress: bool, await_target: bool = False) -> list[str]:
    """The agent's flags (virtmigrate/agent/settings.py) for this migration (pure). With API access
    (`report_progress`) it reads and writes its Migration; `await_target`: created before TargetReady (the early
    start), it waits there for its target (agent/gate.py) — one created at TargetReady has nothing to wait for."""
    args = [f"--domain={vm.domain_name}", f"--destination-uri={dest.libvirt_uri}",
            f"--bandwidth={policy.bandwidth_mib_s}",
            f"--completion-timeout-per-gib={policy.completion_timeout_per_gib_s}",
            f"--progress-timeout={policy.progress_timeout_s}", f"--max-downtime={policy.max_downtime_ms}",
            f"--allow-post-copy={str(policy.allow_post_copy).lower()}",
            f"--allow-auto-converge={str(policy.allow_auto_converge).lower()}",
            f"--allow-pause={str(policy.allow_pause).lower()}"]
    if dest.migration_uri:
        args.append(f"--migration-uri={dest.migration_uri}")
    if report_progress:
        args += [f"--migration={migration.name}", f"--namespace={migration.namespace}"]
        if await_target:
            args.append(f"--await-target-uid={migration.uid}")
    return args


def owner_reference(migration: Migration) -> JSON:
    return {"apiVersion": API_VERSION, "kind": "Migration", "name": migration.name, "uid": migration.uid,
            "controller": True, "blockOwnerDeletion": True}


def new_agent_pod(vm: VM, migration: Migration, *, source_node: str, dest: Destination,
                  policy: PolicyDefaults, service_account: str = "", image: str = AGENT_IMAGE,
                  await_target: bool = False) -> JSON:
    """The agent pod: runs `virtmigrate-agent` on the source node, never restarted (pure).

    It is bound directly to the source node (spec.nodeName): the agent must run where the guest is,
    whatever taints or cordons the node carries, so it also tolerates everything."""
    container: JSON = {
        "name": AGENT_CONTAINER, "image": image, "command": [AGENT_COMMAND],
        "args": agent_args(vm, migration, dest, policy, report_progress=bool(service_account),
                           await_target=await_target and bool(service_account)),
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE",
                 "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}}],
        "resources": {"requests": {"memory": "64Mi", "cpu": "50m"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: JSON = {
        "nodeName": source_node,
        "restartPolicy": "Never",  # one attempt: its exit code is the migration's outcome
        "terminationGracePeriodSeconds": AGENT_GRACE_S,
        "tolerations": [{"operator": "Exists"}],
        "containers": [container],
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    else:
        spec["automountServiceAccountToken"] = False
    meta: JSON = {"name": agent_pod_name(migration), "namespace": migration.namespace,
                  "labels": child_labels(vm, migration, ROLE_AGENT),
                  "annotations": child_annotations(vm, migration),
                  # The exit code and termination message stay readable until the controller recorded them
                  # on the Migration, even if the pod is deleted meanwhile (or the controller is down).
                  "finalizers": [FINALIZER_AGENT],
                  "ownerReferences": [owner_reference(migration)]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def new_abort_pod(vm: VM, migration: Migration, *, source_node: str, image: str = AGENT_IMAGE) -> JSON:
    """A short-lived agent on the source node that aborts the domain's migration job (pure): used when a
    job outlived its agent. It exits 0 once no job runs (aborted, or already ended)."""
    container: JSON = {
        "name": AGENT_CONTAINER, "image": image, "command": [AGENT_COMMAND],
        "args": ["--abort-job", f"--domain={vm.domain_name}"],
        "resources": {"requests": {"memory": "32Mi", "cpu": "10m"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: JSON = {"nodeName": source_node, "restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                  "tolerations": [{"operator": "Exists"}], "automountServiceAccountToken": False,
                  "containers": [container]}
    meta: JSON = {"name": abort_pod_name(migration), "namespace": migration.namespace,
                  "labels": child_labels(vm, migration, ROLE_ABORT),
                  "annotations": child_annotations(vm, migration),
                  "ownerReferences": [owner_reference(migration)]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def new_target_pod(vm: VM, migration: Migration, merged: Merged) -> JSON:
    """The target launcher pod in receive mode, placed by the merged constraints (pure)."""
    fields = merged.pod_spec_fields()
    pod = vmpods.new_launcher_pod(vm, mode="receive", node_selector=fields["nodeSelector"],
                                  affinity=fields["affinity"], tolerations=fields["tolerations"],
                                  name=target_pod_name(migration, vm), migration=migration)
    return pod


def witness_pod_name(migration: Migration, vm: VM, side: str) -> str:
    """The witness launcher pod of `side` ("source" or "target"): deterministic per Migration and side."""
    return vmpods.launcher_pod_name(vm, migration_uid=f"{migration.uid}/{side}-witness")


def new_witness_pod(vm: VM, migration: Migration, *, side: str, node: str) -> JSON:
    """A receive-mode launcher bound to `node` (pure): it reports what that node's libvirt holds of the guest
    and holds the guest if it runs there, but never starts one — the voice of a side whose launcher died
    without a word (decide.py, CREATE_WITNESS)."""
    pod = vmpods.new_launcher_pod(vm, mode="receive", name=witness_pod_name(migration, vm, side),
                                  migration=migration, node_name=node)
    pod["metadata"]["annotations"][ANNOTATION_WITNESS] = side
    return pod
