"""Field readers that raise ValidationError naming the JSON path of a bad field."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from virtmigrate.errors import ValidationError

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUANTITY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti)?$")
_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def mapping(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    val = obj.get(key)
    if val is None:
        return {}
    if not isinstance(val, Mapping):
        raise ValidationError(f"{path}: must be an object, got {type(val).__name__}", field=path)
    return val


def string(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
    val = obj.get(key)
    if val is None or val == "":
        if required:
            raise ValidationError(f"{path}: required", field=path)
        return ""
    if not isinstance(val, str):
        raise ValidationError(f"{path}: must be a string, got {type(val).__name__}", field=path)
    return val


def optional_int(obj: Mapping[str, Any], key: str, path: str, *, minimum: int = 0) -> int | None:
    val = obj.get(key)
    if val is None:
        return None
    if isinstance(val, bool) or not isinstance(val, int):
        raise ValidationError(f"{path}: must be an integer, got {val!r}", field=path)
    if val < minimum:
        raise ValidationError(f"{path}: must be at least {minimum}, got {val}", field=path)
    return val


def optional_bool(obj: Mapping[str, Any], key: str, path: str) -> bool | None:
    val = obj.get(key)
    if val is None:
        return None
    if not isinstance(val, bool):
        raise ValidationError(f"{path}: must be true or false, got {val!r}", field=path)
    return val


def dns_name(value: str, path: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        raise ValidationError(
            f"{path}: {value!r} is not a valid name: use lower-case alphanumerics, '-' and '.', "
            "starting and ending with an alphanumeric (at most 253 characters)", field=path)
    return value


def label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return bool(LABEL_NAME.match(name))


def label_map(obj: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    raw = mapping(obj, key, path)
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not label_key_ok(k):
            raise ValidationError(f"{path}: key {k!r} is not a valid label key", field=f"{path}[{k}]")
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            raise ValidationError(f"{path}[{k}]: value {v!r} is not a valid label value "
                                  "(at most 63 alphanumerics, '-', '_' or '.')", field=f"{path}[{k}]")
        out[k] = v
    return out


def quantity_bytes(value: str, path: str) -> int:
    m = QUANTITY.match(value)
    if not m:
        raise ValidationError(f"{path}: {value!r} is not a memory quantity such as 128Mi or 1Gi", field=path)
    n = int(m.group(1)) * _UNITS[m.group(2)]
    if n <= 0:
        raise ValidationError(f"{path}: {value!r} is no memory at all: give a positive quantity such as 128Mi",
                              field=path)
    return n


E = TypeVar("E", bound=enum.Enum)


def optional_phase(obj: Mapping[str, Any], phases: type[E]) -> E | None:
    """`status.phase` of `obj` as one of `phases`, None when unset."""
    raw = string(mapping(obj, "status", "status"), "phase", "status.phase")
    if not raw:
        return None
    try:
        return phases(raw)
    except ValueError:
        raise ValidationError(f"status.phase: unknown phase {raw!r}", field="status.phase") from None
