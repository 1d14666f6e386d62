"""Typed view of a VM (kubevirt.io/v1alpha1): the guest, where it may run, where it runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from virtmigrate.api import _parse as p
from virtmigrate.api.constants import EvictionStrategy, VMPhase
from virtmigrate.errors import ValidationError


@dataclass(frozen=True, slots=True)
class VMSpec:
    memory_bytes: int
    cpus: int = 1
    running: bool = False
    kernel: str = ""
    cmdline: str = ""
    disk: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    required_terms: tuple[Mapping[str, Any], ...] = ()
    tolerations: tuple[Mapping[str, Any], ...] = ()
    eviction_strategy: EvictionStrategy = EvictionStrategy.NONE

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> VMSpec:
        memory = p.quantity_bytes(p.string(spec, "memory", "spec.memory", required=True), "spec.memory")
        cpus = p.optional_int(spec, "cpus", "spec.cpus", minimum=1) or 1
        affinity = p.mapping(p.mapping(spec, "affinity", "spec.affinity"), "nodeAffinity",
                             "spec.affinity.nodeAffinity")
        required = p.mapping(affinity, "requiredDuringSchedulingIgnoredDuringExecution",
                             "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution")
        terms = required.get("nodeSelectorTerms") or []
        tolerations = spec.get("tolerations") or []
        if not isinstance(terms, list) or not isinstance(tolerations, list):
            raise ValidationError("spec.affinity or spec.tolerations: must be lists", field="spec")
        return cls(
            memory_bytes=memory, cpus=cpus,
            running=bool(p.optional_bool(spec, "running", "spec.running")),
            kernel=p.string(spec, "kernel", "spec.kernel"),
            cmdline=p.string(spec, "cmdline", "spec.cmdline"),
            disk=p.string(spec, "disk", "spec.disk"),
            node_selector=p.label_map(spec, "nodeSelector", "spec.nodeSelector"),
            required_terms=tuple(terms), tolerations=tuple(tolerations),
            eviction_strategy=_eviction_strategy(spec),
        )


def _eviction_strategy(spec: Mapping[str, Any]) -> EvictionStrategy:
    raw = p.string(spec, "evictionStrategy", "spec.evictionStrategy")
    try:
        return EvictionStrategy(raw) if raw else EvictionStrategy.NONE
    except ValueError:
        allowed = ", ".join(e.value for e in EvictionStrategy)
        raise ValidationError(f"spec.evictionStrategy: {raw!r} is not one of {allowed}",
                              field="spec.evictionStrategy") from None


@dataclass(frozen=True, slots=True)
class Evacuation:
    """`status.evacuation`, written by the evacuation controller: why the VM is (not) leaving `node`.

    `released` means: no node can take the guest and its strategy is LiveMigrateIfPossible, so its
    launcher is no longer protected from eviction (the VM controller removes its PodDisruptionBudget)."""

    node: str = ""
    reason: str = ""
    message: str = ""
    released: bool = False

    @classmethod
    def parse(cls, status: Mapping[str, Any]) -> Evacuation:
        ev = p.mapping(status, "evacuation", "status.evacuation")
        return cls(node=p.string(ev, "node", "status.evacuation.node"),
                   reason=p.string(ev, "reason", "status.evacuation.reason"),
                   message=p.string(ev, "message", "status.evacuation.message"),
                   released=bool(p.optional_bool(ev, "released", "status.evacuation.released")))


@dataclass(frozen=True, slots=True)
class VM:
    """A VM as read from the API. `raw` is the object itself: never modify it."""

    namespace: str
    name: str
    uid: str
    spec: VMSpec
    phase: VMPhase | None
    node: str
    launcher_pod: str
    raw: Mapping[str, Any]
    evacuation: Evacuation = field(default_factory=Evacuation)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def domain_name(self) -> str:
        """The libvirt domain's name: unique per namespace and VM on every node."""
        return f"{self.namespace}_{self.name}"

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> VM:
        meta = p.mapping(obj, "metadata", "metadata")
        status = p.mapping(obj, "status", "status")
        phase = p.optional_phase(obj, VMPhase)
        return cls(
            namespace=p.string(meta, "namespace", "metadata.namespace"),
            name=p.string(meta, "name", "metadata.name", required=True),
            uid=p.string(meta, "uid", "metadata.uid"),
            spec=VMSpec.parse(p.mapping(obj, "spec", "spec")),
            phase=phase,
            node=p.string(status, "node", "status.node"),
            launcher_pod=p.string(status, "launcherPod", "status.launcherPod"),
            raw=obj,
            evacuation=Evacuation.parse(status),
        )
