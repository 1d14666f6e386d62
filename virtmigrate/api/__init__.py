"""Typed views of virtmigrate's custom resources (kubevirt.io/v1alpha1 Migration and VM).

Views are parsed from the API's JSON and never mutate it; invalid input raises
virtmigrate.errors.ValidationError naming the field.
"""

from virtmigrate.api.constants import GROUP, VERSION, MigrationPhase, VMPhase
from virtmigrate.api.migration import Migration, MigrationPolicy, MigrationSpec
from virtmigrate.api.vm import VM, VMSpec

__all__ = [
    "GROUP",
    "VERSION",
    "VM",
    "Migration",
    "MigrationPhase",
    "MigrationPolicy",
    "MigrationSpec",
    "VMPhase",
    "VMSpec",
]
