"""A Migration's effective settings: cluster defaults < the MigrationPolicy that selects its VM < its own spec.

Fed by: migration/execute.py at admission, with the controller's defaults (config.py), the MigrationPolicies and
Namespaces from their informers, the VM and the Migration. Consumed by: the same module, which records the
result in the Migration's status (`migrationPolicy`, `migrationConfiguration`) in the Scheduling write and
builds the agent's flags from what was recorded, so a policy edited mid-migration changes nothing in flight.
Pure. The cluster's maxima, where configured, apply inside `compute_policy` after this layering.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from virtmigrate import errors
from virtmigrate.api.migration import Migration
from virtmigrate.api.policy import MigrationPolicyObject, select_policy
from virtmigrate.api.vm import VM
from virtmigrate.controller.migration.pods import PolicyDefaults, compute_policy

JSON = dict[str, Any]

# PolicyDefaults field -> its name in the API (the Migration's spec, the policy's spec, the status record)
API_NAMES = {"bandwidth_mib_s": "bandwidthMiBps", "completion_timeout_per_gib_s": "completionTimeoutPerGiB",
             "progress_timeout_s": "progressTimeout", "max_downtime_ms": "maxDowntimeMs",
             "allow_post_copy": "allowPostCopy", "allow_auto_converge": "allowAutoConverge",
             "allow_pause": "allowPause"}


def effective_policy(defaults: PolicyDefaults, policy: MigrationPolicyObject | None,
                     migration: Migration) -> PolicyDefaults:
    """Each field: the Migration's spec if set, else the policy's if set, else the cluster default."""
    base = compute_policy(defaults, policy.settings) if policy is not None else defaults
    return compute_policy(base, migration.spec.policy)


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
            vm: VM, migration: Migration) -> tuple[PolicyDefaults, str]:
    """(the effective settings, the name of the policy applied or "")."""
    ns_labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    vm_labels = (vm.raw.get("metadata") or {}).get("labels") or {}
    chosen = select_policy(parse_policies(policies), ns_labels, vm_labels)
    return effective_policy(defaults, chosen, migration), chosen.name if chosen is not None else ""


def configuration_status(policy: PolicyDefaults) -> JSON:
    """`status.migrationConfiguration`: every setting the agent gets, by its API name."""
    return {API_NAMES[f.name]: getattr(policy, f.name) for f in fields(policy)}


def configuration_from_status(status: Mapping[str, Any]) -> PolicyDefaults | None:
    """The settings recorded at admission, or None when the Migration has no complete record."""
    rec = status.get("migrationConfiguration") or {}
    if not all(name in rec for name in API_NAMES.values()):
        return None
    return PolicyDefaults(**{f: rec[name] for f, name in API_NAMES.items()})
