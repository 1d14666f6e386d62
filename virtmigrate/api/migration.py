"""Typed view of a Migration (kubevirt.io/v1alpha1): spec, optional policy overrides, status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from virtmigrate.api import _parse as p
from virtmigrate.api.constants import MigrationPhase


@dataclass(frozen=True)
class MigrationPolicy:
    """Per-Migration overrides of the controller's policy defaults; None means 'use the default'."""

    bandwidth_mib_s: int | None = None
    completion_timeout_per_gib_s: int | None = None
    progress_timeout_s: int | None = None
    max_downtime_ms: int | None = None
    allow_post_copy: bool | None = None
    allow_auto_converge: bool | None = None
    allow_pause: bool | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> MigrationPolicy:
        """The settings fields of a Migration's (or a MigrationPolicy's) spec; unset ones stay None."""
        return cls(
            bandwidth_mib_s=p.optional_int(spec, "bandwidthMiBps", "spec.bandwidthMiBps"),
            completion_timeout_per_gib_s=p.optional_int(spec, "completionTimeoutPerGiB",
                                                        "spec.completionTimeoutPerGiB", minimum=1),
            progress_timeout_s=p.optional_int(spec, "progressTimeout", "spec.progressTimeout", minimum=1),
            max_downtime_ms=p.optional_int(spec, "maxDowntimeMs", "spec.maxDowntimeMs", minimum=1),
            allow_post_copy=p.optional_bool(spec, "allowPostCopy", "spec.allowPostCopy"),
            allow_auto_converge=p.optional_bool(spec, "allowAutoConverge", "spec.allowAutoConverge"),
            allow_pause=p.optional_bool(spec, "allowPause", "spec.allowPause"),
        )


@dataclass(frozen=True, slots=True)
class MigrationSpec:
    vm_name: str
    node_selector: dict[str, str] = field(default_factory=dict)
    policy: MigrationPolicy = field(default_factory=MigrationPolicy)

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> MigrationSpec:
        sel = p.mapping(spec, "selector", "spec.selector")
        name = p.dns_name(p.string(sel, "name", "spec.selector.name", required=True), "spec.selector.name")
        policy = MigrationPolicy.parse(spec)
        return cls(vm_name=name, node_selector=p.label_map(spec, "nodeSelector", "spec.nodeSelector"),
                   policy=policy)


@dataclass(frozen=True, slots=True)
class Migration:
    """A Migration as read from the API. `raw` is the object itself: never modify it."""

    namespace: str
    name: str
    uid: str
    spec: MigrationSpec
    phase: MigrationPhase | None
    deleting: bool
    raw: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def status(self) -> Mapping[str, Any]:
        return p.mapping(self.raw, "status", "status")

    @classmethod
    def parse(cls, obj: Mapping[str, Any], *, spec: MigrationSpec | None = None) -> Migration:
        """`obj` as a Migration; `spec`: its spec parsed already (from an earlier version of the same object
        and generation: the spec is immutable), else parsed here."""
        meta = p.mapping(obj, "metadata", "metadata")
        phase = p.optional_phase(obj, MigrationPhase)
        return cls(
            namespace=p.string(meta, "namespace", "metadata.namespace"),
            name=p.string(meta, "name", "metadata.name", required=True),
            uid=p.string(meta, "uid", "metadata.uid"),
            spec=spec if spec is not None else MigrationSpec.parse(p.mapping(obj, "spec", "spec")),
            phase=phase,
            deleting=bool(meta.get("deletionTimestamp")),
            raw=obj,
        )
