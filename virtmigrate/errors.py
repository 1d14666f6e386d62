"""The exception tree. Everything virtmigrate raises on purpose derives from VirtMigrateError.

    VirtMigrateError
    ├── ValidationError          bad user input; names the object, field and fix; never retried
    ├── ConfigError              bad flags, environment or configuration of a component
    ├── KubeError                an API call failed (raised only by virtmigrate.kube, from the HTTP error)
    │   ├── NotFound             404
    │   ├── AlreadyExists        409 on create
    │   ├── Conflict             409 on update (stale resourceVersion)
    │   ├── Gone                 410: the resourceVersion is too old; relist
    │   ├── Forbidden            403 (and 401 Unauthorized)
    │   ├── Invalid              422: the API server rejected the object; message names the field
    │   ├── ServerError          5xx, timeouts, connection failures: transient, retry with backoff
    │   └── WatchError           a watch stream broke or sent an ERROR event other than 410
    └── LibvirtError             a libvirt call failed (raised by the agent's and launcher's adapters)
"""

from __future__ import annotations


class VirtMigrateError(Exception):
    """Root of every error virtmigrate raises on purpose."""


class ValidationError(VirtMigrateError):
    """User input is invalid. `field` is the JSON path of the offending field."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ConfigError(VirtMigrateError):
    """A component's flags, environment or configuration are invalid."""


class KubeError(VirtMigrateError):
    """An API request failed. `status` is the HTTP status (0 for transport errors)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "", body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.body = body


class NotFound(KubeError):
    """404: the object does not exist."""


class AlreadyExists(KubeError):
    """409 on create: an object with that name exists."""


class Conflict(KubeError):
    """409 on update: the object changed since it was read."""


class Gone(KubeError):
    """410: the requested resourceVersion is too old; the caller must relist."""


class Forbidden(KubeError):
    """403 or 401: the identity lacks the permission (or is not authenticated)."""


class Invalid(KubeError):
    """422: the API server rejected the object; the message names the field."""


class ServerError(KubeError):
    """A 5xx, 429, a timeout or a broken connection: transient, retry with backoff."""


class WatchError(KubeError):
    """A watch stream ended abnormally or sent an ERROR event other than 410."""


class LibvirtError(VirtMigrateError):
    """A libvirt call failed. `code` is libvirt's error code when known."""

    def __init__(self, message: str, *, code: int = 0) -> None:
        super().__init__(message)
        self.code = code
