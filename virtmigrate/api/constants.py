"""Names shared by every component: the API group, phases, labels, annotations, finalizers."""

from __future__ import annotations

import enum

GROUP = "kubevirt.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class MigrationPhase(enum.StrEnum):
    PENDING = "Pending"            # accepted; waiting for capacity or not yet acted on
    SCHEDULING = "Scheduling"      # target launcher pod created, not yet bound to a node
    SCHEDULED = "Scheduled"        # target pod bound to a node
    TARGET_READY = "TargetReady"   # target launcher waits for the incoming domain
    RUNNING = "Running"            # agent pod runs the libvirt migration
    SUCCEEDED = "Succeeded"        # the VM runs on the target node (terminal)
    FAILED = "Failed"              # the VM stays on its source node; reason says why (terminal)

    @property
    def terminal(self) -> bool:
        return self in (MigrationPhase.SUCCEEDED, MigrationPhase.FAILED)


class VMPhase(enum.StrEnum):
    PENDING = "Pending"        # accepted, no launcher pod yet
    SCHEDULING = "Scheduling"  # launcher pod created, guest not yet running
    RUNNING = "Running"        # guest runs on status.node
    MIGRATING = "Migrating"    # guest runs and a Migration moves it
    STOPPED = "Stopped"        # spec.running is false and no guest runs
    FAILED = "Failed"          # the guest stopped unexpectedly; reason says why
    UNKNOWN = "Unknown"        # no node verifiably runs the guest: being located, or an admin must choose


class EvictionStrategy(enum.StrEnum):
    """What draining the node a VM runs on does to it (VM spec.evictionStrategy)."""

    LIVE_MIGRATE = "LiveMigrate"                       # protected from eviction; moved by an evacuation
    LIVE_MIGRATE_IF_POSSIBLE = "LiveMigrateIfPossible"  # moved when a target exists, else evicted (shut down)
    NONE = "None"                                      # the default: evicted like any pod; the guest stops

    @property
    def migrates(self) -> bool:
        return self is not EvictionStrategy.NONE


LABEL_PREFIX = "virtmigrate.kubevirt.io"
LABEL_VM = f"{LABEL_PREFIX}/vm"                # on launcher and agent pods: the VM's name
LABEL_MIGRATION = f"{LABEL_PREFIX}/migration"  # on target launcher and agent pods: the Migration's name
LABEL_ROLE = f"{LABEL_PREFIX}/role"            # "launcher" or "agent"
LABEL_EVACUATION = f"{LABEL_PREFIX}/evacuation"  # on evacuation Migrations: the node being drained
ROLE_LAUNCHER = "launcher"
ROLE_AGENT = "agent"
ROLE_ABORT = "abort"  # the short-lived pod that aborts a migration job which outlived its agent

FINALIZER_MIGRATION = f"{LABEL_PREFIX}/cancel"  # holds a Migration until its cancellation is complete
FINALIZER_AGENT = f"{LABEL_PREFIX}/agent-outcome"  # holds an agent pod (and its exit code) until recorded

ANNOTATION_LIBVIRT_URI = f"{LABEL_PREFIX}/libvirt-uri"              # on Nodes: how peers reach its libvirtd
ANNOTATION_MIGRATION_ADDRESS = f"{LABEL_PREFIX}/migration-address"  # on Nodes: address for migration data
HOSTNAME_LABEL = "kubernetes.io/hostname"
UNSCHEDULABLE_TAINT_KEY = "node.kubernetes.io/unschedulable"        # the cordon taint, when a controller adds it
DEFAULT_DRAIN_TAINT_KEY = f"{LABEL_PREFIX}/drain"                   # a taint with this key also means "drain"
NODE_CONDITION_EVACUATION = "VirtMigrateEvacuation"  # on Nodes: whether every VM to evacuate can go somewhere
