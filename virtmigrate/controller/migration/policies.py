"""A Migration's effective settings: cluster defaults < the MigrationPolicy that selects its VM < its own spec.

Fed by: migration/execute.py at admission, with the controller's defaults (config.py), the MigrationPolicies and
Namespaces from their informers, the VM and the Migration. Consumed by: the same module, which records the
result in the Migration's status (`migrationPolicy`, `migrationConfiguration`) in the Scheduling write and
builds the agent's flags from what was recorded, so a policy edited mid-migration changes nothing in flight.
Pure. The cluster's maxima (controller/policy.py `PolicyLimits`) bound both layers above the defaults: the
Migration's own spec beyond them fails it (`PolicyViolation`, checked in migration/observe.py); the policy's
settings the Migration inherits are clamped to them here, and each clamp is returned as a message that the
admission write records (condition and Warning Event `PolicyClamped`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from virtmigrate import errors
from virtmigrate.api.migration import Migration
from virtmigrate.api.policy import MigrationPolicyObject, select_policy
from virtmigrate.api.vm import VM
from virtmigrate.controller.migration.pods import PolicyDefaults, compute_policy
from virtmigrate.controller.policy import PolicyLimits, clamp_policy

JSON = dict[str, Any]

# PolicyDefaults field -> its name in the API (the Migration's spec, the policy's spec, the status record)
API_NAMES = {"bandwidth_mib_s": "bandwidthMiBps", "completion_timeout_per_gib_s": "completionTimeoutPerGiB",
             "progress_timeout_s": "progressTimeout", "max_downtime_ms": "maxDowntimeMs",
             "allow_post_copy": "allowPostCopy", "allow_auto_converge": "allowAutoConverge",
             "allow_pause": "allowPause"}


@dataclass(frozen=True)
class Resolved:
    """A Migration's effective settings and where they came from."""

    settings: PolicyDefaults
    policy_name: str = ""          # the MigrationPolicy applied; "" when none selects the VM
    clamped: tuple[str, ...] = ()  # that policy's inherited settings brought within the limits, one message each


def effective_policy(defaults: PolicyDefaults, policy: MigrationPolicyObject | None, migration: Migration, *,
                     limits: PolicyLimits | None = None) -> Resolved:
    """Each field: the Migration's spec if set, else the policy's if set (clamped to `limits`), else the
    cluster default. Only the policy fields the Migration inherits are clamped: one it overrides never
    reaches the agent."""
    own = migration.spec.policy
    if policy is None:
        return Resolved(compute_policy(defaults, own))
    inherited = replace(policy.settings, **{k: None for k, v in vars(own).items() if v is not None})
    bounded, notes = clamp_policy(policy.name, inherited, limits or PolicyLimits())
    return Resolved(compute_policy(compute_policy(defaults, bounded), own), policy.name, notes)


def parse_policies(objs: Iterable[Mapping[str, Any]]) -> list[MigrationPolicyObject]:
    """Every valid policy; an invalid one (the schema lets little through) is skipped, not fatal."""
    out = []
    for obj in objs:
        try:
            out.append(MigrationPolicyObject.parse(obj))
        except errors.ValidationError:
            continue  # a policy the schema admitted but we cannot read selects nothing
    return out


def resolve(defaults: PolicyDefaults, policies: Iterable[Mapping[str, Any]], namespace: Mapping[str, Any] | None,
            vm: VM, migration: Migration, *, limits: PolicyLimits | None = None) -> Resolved:
    """The settings of `migration` given every policy, its namespace and its VM."""
    ns_labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    vm_labels = (vm.raw.get("metadata") or {}).get("labels") or {}
    chosen = select_policy(parse_policies(policies), ns_labels, vm_labels)
    return effective_policy(defaults, chosen, migration, limits=limits)


def configuration_status(policy: PolicyDefaults) -> JSON:
    """`status.migrationConfiguration`: every setting the agent gets, by its API name."""
    return {API_NAMES[f.name]: getattr(policy, f.name) for f in fields(policy)}


def configuration_from_status(status: Mapping[str, Any]) -> PolicyDefaults | None:
    """The settings recorded at admission, or None when the Migration has no complete record."""
    rec = status.get("migrationConfiguration") or {}
    if not all(name in rec for name in API_NAMES.values()):
        return None
    return PolicyDefaults(**{f: rec[name] for f, name in API_NAMES.items()})
