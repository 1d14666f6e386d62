"""Fixtures for tests on real libvirt daemons: two hosts for the session, guests per test, the agent as a
real subprocess inside the source host's mount namespace (as in its pod, via a hostPath socket).

Import into a test module: `from tests.integration.libvirt_fixtures import libvirt_hosts, guests`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from virtmigrate.local.guest import GuestSpec, domain_xml, guest_kernel
from virtmigrate.local.libvirthosts import LibvirtHosts

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="session")
def libvirt_hosts() -> Iterator[LibvirtHosts]:
    """Two real libvirt hosts in a temp dir (migration addresses 127.0.0.40/41, clear of the local cluster's)."""
    state = Path(tempfile.mkdtemp(prefix="virtmigrate-libvirt-test-"))
    hosts = LibvirtHosts(state, 2, first_address=40)
    try:
        hosts.up()
        yield hosts
    finally:
        hosts.down()
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class Guest:
    name: str
    uuid: str
    memory_mib: int
    mode: str

    def serial(self, hosts: LibvirtHosts, index: int) -> str:
        f = hosts.host(index).qemu_log_dir / f"{self.name}-serial.log"
        return f.read_text(errors="replace") if f.exists() else ""

    def heartbeats(self, hosts: LibvirtHosts, index: int) -> list[int]:
        """Heartbeat numbers printed on host `index`'s serial file, in order."""
        return [int(line.split()[1]) for line in self.serial(hosts, index).splitlines()
                if line.startswith("heartbeat ")]

    def state_on(self, hosts: LibvirtHosts, index: int) -> str:
        """'running', 'paused', ... or 'absent'."""
        r = hosts.virsh(index, "domstate", self.uuid, check=False)
        return r.stdout.strip() if r.returncode == 0 else "absent"

    def persistent_on(self, hosts: LibvirtHosts, index: int) -> bool:
        r = hosts.virsh(index, "dominfo", self.uuid, check=False)
        return r.returncode == 0 and any(line.split() == ["Persistent:", "yes"] for line in r.stdout.splitlines())


@dataclass
class Guests:
    hosts: LibvirtHosts
    started: list[Guest] = field(default_factory=list)

    def start(self, *, memory_mib: int = 64, mode: str = "idle", on: int = 0) -> Guest:
        """Define and start a guest on host `on`; return once its RAM is filled and it runs its loop."""
        g = Guest(f"guest-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), memory_mib, mode)
        xml = self.hosts.host(on).root / f"{g.name}.xml"
        xml.write_text(domain_xml(GuestSpec(g.name, g.uuid, guest_kernel(), memory_mib, mode)))
        self.started.append(g)
        self.hosts.virsh(on, "define", str(xml))
        self.hosts.virsh(on, "start", g.name)
        wait_for(lambda: "filled ram" in g.serial(self.hosts, on), 30, f"{g.name} to fill its RAM")
        return g

    def cleanup(self) -> None:
        for g in self.started:
            for i in range(len(self.hosts.hosts)):
                with contextlib.suppress(Exception):
                    self.hosts.virsh(i, "destroy", g.uuid, check=False)
                    self.hosts.virsh(i, "undefine", g.uuid, check=False)


@pytest.fixture
def guests(libvirt_hosts: LibvirtHosts) -> Iterator[Guests]:
    """Start guests with `guests.start(...)`; all are destroyed and undefined on every host afterwards."""
    g = Guests(libvirt_hosts)
    try:
        yield g
    finally:
        g.cleanup()


def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class AgentRun:
    returncode: int
    stderr: str
    result: dict[str, object]

    def logs(self) -> list[dict[str, object]]:
        out = []
        for line in self.stderr.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def agent_argv(hosts: LibvirtHosts, domain: str, *, src: int = 0, dst: int = 1, term: Path,
               extra: Sequence[str] = ()) -> list[str]:
    """The agent inside host `src`'s mount namespace, reaching it through qemu:///system."""
    return [*hosts.nsenter(src), sys.executable, "-m", "virtmigrate.cmd.agent", "--domain", domain,
            "--destination-uri", hosts.host(dst).uri, "--migration-uri", hosts.host(dst).migration_uri,
            "--termination-message-path", str(term), *extra]


def start_agent(hosts: LibvirtHosts, domain: str, tmp: Path, *, extra: Sequence[str] = (),
                dst: int = 1) -> tuple[subprocess.Popen[str], Path]:
    term = tmp / f"termination-{uuid.uuid4().hex[:6]}.json"
    proc = subprocess.Popen(agent_argv(hosts, domain, term=term, extra=extra, dst=dst), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, term


def finish_agent(proc: subprocess.Popen[str], term: Path, timeout: float = 120) -> AgentRun:
    _, stderr = proc.communicate(timeout=timeout)
    result = json.loads(term.read_text()) if term.exists() else {}
    return AgentRun(proc.returncode, stderr, result)


def run_agent(hosts: LibvirtHosts, domain: str, tmp: Path, *, extra: Sequence[str] = (),
              dst: int = 1) -> AgentRun:
    proc, term = start_agent(hosts, domain, tmp, extra=extra, dst=dst)
    return finish_agent(proc, term)


def wait_for_migration_job(hosts: LibvirtHosts, g: Guest, *, on: int = 0, min_processed_mib: int = 16) -> None:
    """Block until the source reports a running migration job that has sent some data."""
    def moving() -> bool:
        r = hosts.virsh(on, "domjobinfo", g.uuid, check=False)
        fields = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
        processed = fields.get("Data processed", "0 B").split()
        if "Unbounded" not in fields.get("Job type", "") or len(processed) < 2:
            return False
        scale = {"B": 1 / (1 << 20), "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(processed[1], 0)
        return float(processed[0]) * scale >= min_processed_mib

    wait_for(moving, 30, f"a migration job of {g.name} to be under way")
