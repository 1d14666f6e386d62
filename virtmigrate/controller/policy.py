"""What a tenant may ask for: the cluster's bounds on a Migration's policy, the directories a VM's kernel
and disk may come from, and the libvirt URIs a Node may name. Pure checks, no I/O.

Fed by: the controller's configuration (config.py: `PolicyLimits`, `ImageDirs`) and the objects the
informers hold (a Migration's policy overrides, a VM's spec, a Node's annotations).
Consumed by: migration/observe.py (a violation fails the Migration: reasons PolicyViolation, InvalidSpec,
InvalidDestination) and the VM controller (a disallowed path fails the VM with reason InvalidSpec).

The API server cannot know these bounds (they are the controller's runtime configuration), so a spec
beyond them is admitted and then **failed, never clamped**: a tenant who asked for post-copy or 2 GiB/s
learns at once, in the Migration's status, which field broke which limit — a silently clamped migration
would behave differently from what its spec says. Every check returns "" when all is well, otherwise one
message per problem naming the field, the limit and the fix.

A MigrationPolicy's defaults beyond the same bounds are **clamped, visibly** (`clamp_policy`): a policy is the
admin's, selects many VMs at once (evacuations during a drain among them) and no tenant can fix it, so failing
every Migration it selects would stop maintenance over a configuration slip. The Migration records what was
clamped (condition `PolicyClamped`, a Warning Event of that reason) and runs within the limits.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from virtmigrate.api.constants import ANNOTATION_LIBVIRT_URI, ANNOTATION_MIGRATION_ADDRESS
from virtmigrate.api.migration import MigrationPolicy
from virtmigrate.controller.migration.pods import PolicyDefaults, compute_policy

# --- a Migration's policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyLimits:
    """Bounds a Migration's own policy fields may not cross; 0 means "no bound". A field the Migration
    leaves unset takes the cluster default, which config.py checks against these bounds at start-up."""

    min_bandwidth_mib_s: int = 0        # a Migration may not throttle itself below this (0 = unlimited is fine)
    max_bandwidth_mib_s: int = 0        # nor ask for more (then 0 = unlimited is beyond it)
    max_completion_timeout_per_gib_s: int = 0
    max_progress_timeout_s: int = 0
    max_downtime_ms: int = 0
    permit_post_copy: bool = True       # may a Migration set allowPostCopy: true
    permit_pause: bool = True           # may a Migration set allowPause: true


@dataclass(frozen=True)
class EffectivePolicy:
    """The policy the agent runs with, and why the Migration may not run at all (empty: it may)."""

    policy: PolicyDefaults
    violations: tuple[str, ...] = ()


def _over(field_name: str, value: int | None, limit: int, unit: str, flag: str) -> str:
    if value is None or not limit or value <= limit:
        return ""
    return (f"spec.{field_name}: {value} {unit} exceeds the cluster's limit of {limit} {unit} ({flag}): "
            f"ask for at most {limit}")


def policy_violations(p: MigrationPolicy, limits: PolicyLimits) -> tuple[str, ...]:
    """Every field of a Migration's policy `p` that crosses `limits`."""
    out = [
        _over("completionTimeoutPerGiB", p.completion_timeout_per_gib_s, limits.max_completion_timeout_per_gib_s,
              "s/GiB", "--limit-completion-timeout-per-gib"),
        _over("progressTimeout", p.progress_timeout_s, limits.max_progress_timeout_s, "s", "--limit-progress-timeout"),
        _over("maxDowntimeMs", p.max_downtime_ms, limits.max_downtime_ms, "ms", "--limit-max-downtime"),
    ]
    bw = p.bandwidth_mib_s
    if bw is not None and limits.max_bandwidth_mib_s and (bw == 0 or bw > limits.max_bandwidth_mib_s):
        asked = "0 (unlimited)" if bw == 0 else f"{bw} MiB/s"
        out.append(f"spec.bandwidthMiBps: {asked} exceeds the cluster's cap of {limits.max_bandwidth_mib_s} MiB/s "
                   f"(--limit-bandwidth-max): ask for 1 to {limits.max_bandwidth_mib_s}")
    if bw is not None and bw != 0 and bw < limits.min_bandwidth_mib_s:
        out.append(f"spec.bandwidthMiBps: {bw} MiB/s is below the cluster's floor of {limits.min_bandwidth_mib_s} "
                   f"MiB/s (--limit-bandwidth-min): ask for at least {limits.min_bandwidth_mib_s}")
    if p.allow_post_copy and not limits.permit_post_copy:
        out.append("spec.allowPostCopy: post-copy is not permitted in this cluster (--permit-post-copy=false): "
                   "remove the field or set it to false")
    if p.allow_pause and not limits.permit_pause:
        out.append("spec.allowPause: pausing the guest is not permitted in this cluster (--permit-pause=false): "
                   "remove the field or set it to false")
    return tuple(m for m in out if m)


def compute_effective_policy(defaults: PolicyDefaults, limits: PolicyLimits,
                             overrides: MigrationPolicy) -> EffectivePolicy:
    """The cluster defaults with the Migration's overrides, and the overrides that cross `limits`."""
    return EffectivePolicy(compute_policy(defaults, overrides), policy_violations(overrides, limits))


def defaults_violations(defaults: PolicyDefaults, limits: PolicyLimits) -> tuple[str, ...]:
    """Cluster defaults that cross the cluster's own limits (a configuration error)."""
    as_spec = MigrationPolicy(**{k: v for k, v in vars(defaults).items()})
    return policy_violations(as_spec, limits)


def clamp_policy(name: str, p: MigrationPolicy, limits: PolicyLimits) -> tuple[MigrationPolicy, tuple[str, ...]]:
    """The settings of MigrationPolicy `name` brought within `limits`, and one message per field changed,
    naming the policy, the field, the limit and the value used instead."""
    changes: dict[str, object] = {}
    notes: list[str] = []

    def clamp(attr: str, api: str, limit: int, unit: str, flag: str) -> None:
        value = getattr(p, attr)
        if value is not None and limit and value > limit:
            changes[attr] = limit
            notes.append(f"MigrationPolicy {name}: {api} {value} {unit} exceeds the cluster's limit of {limit} "
                         f"{unit} ({flag}): {limit} {unit} used")

    clamp("completion_timeout_per_gib_s", "completionTimeoutPerGiB", limits.max_completion_timeout_per_gib_s,
          "s/GiB", "--limit-completion-timeout-per-gib")
    clamp("progress_timeout_s", "progressTimeout", limits.max_progress_timeout_s, "s", "--limit-progress-timeout")
    clamp("max_downtime_ms", "maxDowntimeMs", limits.max_downtime_ms, "ms", "--limit-max-downtime")
    bw, cap, floor = p.bandwidth_mib_s, limits.max_bandwidth_mib_s, limits.min_bandwidth_mib_s
    if bw is not None and cap and (bw == 0 or bw > cap):
        changes["bandwidth_mib_s"] = cap
        asked = "0 (unlimited)" if bw == 0 else f"{bw} MiB/s"
        notes.append(f"MigrationPolicy {name}: bandwidthMiBps {asked} exceeds the cluster's cap of {cap} MiB/s "
                     f"(--limit-bandwidth-max): {cap} MiB/s used")
    elif bw is not None and bw != 0 and bw < floor:
        changes["bandwidth_mib_s"] = floor
        notes.append(f"MigrationPolicy {name}: bandwidthMiBps {bw} MiB/s is below the cluster's floor of {floor} "
                     f"MiB/s (--limit-bandwidth-min): {floor} MiB/s used")
    if p.allow_post_copy and not limits.permit_post_copy:
        changes["allow_post_copy"] = False
        notes.append(f"MigrationPolicy {name}: allowPostCopy is not permitted in this cluster "
                     "(--permit-post-copy=false): false used")
    if p.allow_pause and not limits.permit_pause:
        changes["allow_pause"] = False
        notes.append(f"MigrationPolicy {name}: allowPause is not permitted in this cluster "
                     "(--permit-pause=false): false used")
    return replace(p, **changes), tuple(notes)  # type: ignore[arg-type]


# --- image paths -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageDirs:
    """Directories (absolute, on the nodes) a VM's kernel and disk may lie under.

    `cluster`: for every namespace; None means "no restriction" (the default of an embedded or test
    configuration; `virtmigrate-controller` defaults to /var/lib/virtmigrate/images). `by_namespace`: a
    namespace listed here uses its own directories instead of the cluster-wide ones."""

    cluster: tuple[str, ...] | None = None
    by_namespace: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def for_namespace(self, namespace: str) -> tuple[str, ...] | None:
        return self.by_namespace.get(namespace, self.cluster)


def _under(path: str, directory: str) -> bool:
    d = posixpath.normpath(directory)
    return d == "/" or path.startswith(d.rstrip("/") + "/")


@functools.lru_cache(maxsize=4096)  # pure, and asked again on every sync of every Migration of a VM
def check_image_path(path: str, field_path: str, dirs: tuple[str, ...] | None) -> str:
    """"" when `path` ("" = unset) may be used, else why not. `..` is refused outright rather than
    resolved: the node may resolve it differently (symlinks) from the text the controller sees."""
    if not path or dirs is None:
        return ""
    allowed = ", ".join(dirs) if dirs else "(none: the cluster admin allows no directory)"
    fix = f"use a path under one of the allowed directories: {allowed}"
    if not path.startswith("/"):
        return f"{field_path}: {path!r} is not an absolute path: {fix}"
    if ".." in path.split("/") or any(ord(c) < 0x20 for c in path):
        return f"{field_path}: {path!r} contains '..' or a control character: {fix}"
    norm = posixpath.normpath(path)
    if not any(_under(norm, d) for d in dirs):
        return f"{field_path}: {path!r} is not under a directory the cluster admin allows: {fix}"
    return ""


def image_path_problem(namespace: str, kernel: str, disk: str, dirs: ImageDirs) -> str:
    """"" when the VM's kernel and disk may be used in `namespace`, else every problem, naming the fields."""
    allowed = dirs.for_namespace(namespace)
    problems = [check_image_path(kernel, "spec.kernel", allowed), check_image_path(disk, "spec.disk", allowed)]
    return "; ".join(p for p in problems if p)


# --- libvirt URIs on Nodes ---------------------------------------------------------------------------

LIBVIRT_SCHEMES = ("qemu+tcp", "qemu+tls", "qemu")
MIGRATION_SCHEMES = ("tcp",)


def check_libvirt_uri(uri: str) -> str:
    """"" when the source's libvirtd may connect to `uri`, else why not. Only TCP, TLS and local QEMU
    drivers, and no query: parameters such as `command=`, `socket=`, `no_verify=1` or `pkipath=` make
    libvirt run programs, open other sockets or skip certificate checks."""
    parts = urlsplit(uri)
    if parts.scheme not in LIBVIRT_SCHEMES:
        return f"scheme {parts.scheme or '(none)'!r} is not allowed (use {', '.join(LIBVIRT_SCHEMES)})"
    if parts.query or parts.fragment or "?" in uri:
        return "query parameters are not allowed"
    if parts.scheme != "qemu" and not parts.hostname:
        return "it names no host"
    if parts.path not in ("/system", "/session"):
        return f"path {parts.path!r} is not /system or /session"
    return ""


def check_migration_uri(uri: str) -> str:
    """"" when libvirt may send migration data to `uri` (tcp://host[:port], no path or query)."""
    parts = urlsplit(uri)
    if parts.scheme not in MIGRATION_SCHEMES:
        return f"scheme {parts.scheme or '(none)'!r} is not allowed (use tcp://host[:port])"
    if parts.query or parts.fragment or "?" in uri or parts.path not in ("", "/"):
        return "only tcp://host[:port] is allowed, without path or query"
    if not parts.hostname:
        return "it names no host"
    try:
        _ = parts.port
    except ValueError:
        return "its port is not a number"
    return ""


def destination_problem(node: Mapping[str, Any]) -> str:
    """"" when the Node's libvirt URI annotations are fine (or absent), else a message naming the node,
    the annotation and the fix."""
    meta = node.get("metadata") or {}
    ann = meta.get("annotations") or {}
    name = meta.get("name", "")
    out = []
    uri = ann.get(ANNOTATION_LIBVIRT_URI)
    if uri:
        why = check_libvirt_uri(str(uri))
        if why:
            out.append(f"node {name}: annotation {ANNOTATION_LIBVIRT_URI}={uri!r} is refused: {why}")
    mig = ann.get(ANNOTATION_MIGRATION_ADDRESS)
    if mig:
        text = str(mig) if "://" in str(mig) else f"tcp://{mig}"
        why = check_migration_uri(text)
        if why:
            out.append(f"node {name}: annotation {ANNOTATION_MIGRATION_ADDRESS}={mig!r} is refused: {why}")
    if out:
        out.append("the cluster admin must fix the node's annotation")
    return "; ".join(out)
