"""The `Domain` seam: what the monitor does to a migrating libvirt domain, and its libvirt adapter.

The monitor loop (monitor.py) talks only to `Domain`; migrate.py builds a `LibvirtDomain` on the
monitoring connection (never the one blocked in migrateToURI3). Unit tests substitute a fake that
replays recorded job statistics. libvirt errors leave this module as virtmigrate.errors.LibvirtError.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import libvirt

from virtmigrate.agent.jobstats import JOB_NONE, JobStats
from virtmigrate.errors import LibvirtError


class Domain(Protocol):
    def job_stats(self) -> JobStats:
        """The current job's statistics; job_type JOB_NONE when no job runs (or the domain is gone)."""

    def set_max_downtime(self, ms: int) -> None: ...

    def start_post_copy(self) -> None: ...

    def suspend(self) -> None: ...

    def abort_job(self) -> None:
        """Abort the running job; raises LibvirtError when there is none or it cannot be aborted."""

    def raise_throttle(self, increment_pct: int) -> None:
        """Make auto-converge throttle harder: its per-step increment becomes `increment_pct`."""


def _wrap(e: libvirt.libvirtError, what: str) -> LibvirtError:
    return LibvirtError(f"{what}: {e.get_error_message()}", code=e.get_error_code() or 0)


class LibvirtDomain:
    """A `Domain` over a libvirt-python virDomain."""

    def __init__(self, dom: libvirt.virDomain) -> None:
        self._dom = dom

    @property
    def name(self) -> str:
        return str(self._dom.name())

    def job_stats(self) -> JobStats:
        try:
            stats: dict[str, Any] = self._dom.jobStats()
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return JobStats(job_type=JOB_NONE)  # migrated away (UNDEFINE_SOURCE) between polls
            raise _wrap(e, "jobStats") from e
        return JobStats.from_libvirt(stats)

    def set_max_downtime(self, ms: int) -> None:
        try:
            self._dom.migrateSetMaxDowntime(ms, 0)
        except libvirt.libvirtError as e:
            raise _wrap(e, "migrateSetMaxDowntime") from e

    def start_post_copy(self) -> None:
        try:
            self._dom.migrateStartPostCopy(0)
        except libvirt.libvirtError as e:
            raise _wrap(e, "migrateStartPostCopy") from e

    def suspend(self) -> None:
        try:
            self._dom.suspend()
        except libvirt.libvirtError as e:
            raise _wrap(e, "suspend") from e

    def resume(self) -> None:
        try:
            self._dom.resume()
        except libvirt.libvirtError as e:
            raise _wrap(e, "resume") from e

    def abort_job(self) -> None:
        try:
            self._dom.abortJob()
        except libvirt.libvirtError as e:
            raise _wrap(e, "abortJob") from e

    def raise_throttle(self, increment_pct: int) -> None:
        # libvirt has no API to change auto-converge mid-flight; QEMU does (migrate-set-parameters).
        import libvirt_qemu

        cmd = {"execute": "migrate-set-parameters", "arguments": {"cpu-throttle-increment": increment_pct}}
        try:
            libvirt_qemu.qemuMonitorCommand(self._dom, json.dumps(cmd), 0)
        except libvirt.libvirtError as e:
            raise _wrap(e, "migrate-set-parameters") from e
