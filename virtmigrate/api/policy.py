"""Typed view of a MigrationPolicy (migrations.kubevirt.io/v1alpha1, cluster-scoped) and which one applies.

A MigrationPolicy selects VMs by the labels of their namespace and their own labels and sets the defaults of
their migrations (bandwidth, completion timeout per GiB, progress timeout, max downtime, auto-converge,
post-copy, pause). Fed by: the migration controller's informer (parse) and the VM and Namespace it migrates.
Consumed by: controller/migration/policies.py, which layers cluster defaults < the selected policy < the
Migration's own spec (then the cluster's maxima, where configured).

`select_policy` is pure: a policy matches when every label of its namespaceSelector is on the namespace and
every label of its vmSelector is on the VM (an empty selector matches everything); the most specific match
wins — the most labels selected, counting both selectors, as KubeVirt counts them — and ties go to the name
that sorts first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from virtmigrate.api import _parse as p
from virtmigrate.api.migration import MigrationPolicy

GROUP = "migrations.kubevirt.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class MigrationPolicyObject:
    """A MigrationPolicy as read from the API (named apart from `MigrationPolicy`, a Migration's overrides)."""

    name: str
    namespace_selector: dict[str, str] = field(default_factory=dict)
    vm_selector: dict[str, str] = field(default_factory=dict)
    settings: MigrationPolicy = field(default_factory=MigrationPolicy)

    @property
    def specificity(self) -> int:
        return len(self.namespace_selector) + len(self.vm_selector)

    def matches(self, namespace_labels: Mapping[str, str], vm_labels: Mapping[str, str]) -> bool:
        return (all(namespace_labels.get(k) == v for k, v in self.namespace_selector.items())
                and all(vm_labels.get(k) == v for k, v in self.vm_selector.items()))

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> MigrationPolicyObject:
        meta = p.mapping(obj, "metadata", "metadata")
        spec = p.mapping(obj, "spec", "spec")
        sel = p.mapping(spec, "selectors", "spec.selectors")
        settings = MigrationPolicy.parse(spec)
        return cls(name=p.string(meta, "name", "metadata.name", required=True),
                   namespace_selector=p.label_map(sel, "namespaceSelector", "spec.selectors.namespaceSelector"),
                   vm_selector=p.label_map(sel, "vmSelector", "spec.selectors.vmSelector"),
                   settings=settings)


def select_policy(policies: Iterable[MigrationPolicyObject], namespace_labels: Mapping[str, str],
                  vm_labels: Mapping[str, str]) -> MigrationPolicyObject | None:
    """The policy that applies to a VM with `vm_labels` in a namespace with `namespace_labels`, or None."""
    matching = [pol for pol in policies if pol.matches(namespace_labels, vm_labels)]
    if not matching:
        return None
    return min(matching, key=lambda pol: (-pol.specificity, pol.name))
