"""Typed views of virtmigrate's custom resources (kubevirt.io/v1alpha1 Migration and VM).

Views are parsed from the API's JSON and never mutate it; invalid input raises
virtmigrate.errors.ValidationError naming the field.

The names below load on first use, so a program that needs only `virtmigrate.api.exitcodes`
(the agent, whose start-up is on every migration's critical path) does not pay for the views.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from virtmigrate.api.constants import GROUP, VERSION, MigrationPhase, VMPhase
    from virtmigrate.api.migration import Migration, MigrationPolicy, MigrationSpec
    from virtmigrate.api.vm import VM, VMSpec

_WHERE = {
    "GROUP": "constants", "VERSION": "constants", "MigrationPhase": "constants", "VMPhase": "constants",
    "Migration": "migration", "MigrationPolicy": "migration", "MigrationSpec": "migration",
    "VM": "vm", "VMSpec": "vm",
}

__all__ = ["GROUP", "VERSION", "VM", "Migration", "MigrationPhase", "MigrationPolicy", "MigrationSpec",
           "VMPhase", "VMSpec"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'virtmigrate.api' has no attribute {name!r}")
    return getattr(importlib.import_module(f"virtmigrate.api.{module}"), name)
