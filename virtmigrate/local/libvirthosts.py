"""N libvirt "hosts" on one machine: a real libvirtd each, in its own mount namespace.

Each host is `unshare --mount --propagation private` + private bind mounts of per-host folders over
/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt (and over /etc/passwd and
/etc/group, which add the `libvirt-qemu` user the QEMU driver insists on resolving), then
`tini -s -- <restart loop> libvirtd` (a subreaper, so QEMU's double fork is reaped at once; the loop
restarts a libvirtd that died, as systemd does on a real node, and guests survive it). The hosts share the
machine's network and PID namespaces; each has its own host_uuid, TCP port on 127.0.0.1, and a
migration address 127.0.0.1x with its own port range. The unix socket (`run/libvirt-sock` under the host's
folder, /run/libvirt/libvirt-sock inside its namespace) is mode 0770, group `libvirt` (gid SOCKET_GID), so a
non-root container given that supplementary group can use it, as on a Debian node. Facts: shared/notes/libvirt-hosts.md.

Used by the agent's integration tests and benchmark, and by the local cluster (node runner). `up` is
idempotent (it reuses hosts that run); `down` destroys every domain, stops the daemons and kills every
process left in a host's mount namespace, so no process, mount or domain survives it.
`nsenter(host)` gives a command prefix that runs inside a host's mount namespace, where
`qemu:///system` reaches that host's daemon — as a pod on a node would through a hostPath mount.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from virtmigrate.local import procs

# (per-host folder, mount point) pairs bind-mounted privately in each host's namespace.
RESTART_S = 0.5  # a dead libvirtd is started again after this pause (systemd: RestartSec)
_DIR_MOUNTS = (("etc", "/etc/libvirt"), ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"),
               ("log", "/var/log/libvirt"), ("cache", "/var/cache/libvirt"))
_FILE_MOUNTS = (("passwd", "/etc/passwd"), ("group", "/etc/group"))

_QEMU_USER = "libvirt-qemu"
_QEMU_UID_GID = 64055  # Debian's libvirt-qemu uid; only a name the driver resolves, nothing runs as it
# The read-write socket belongs to group `libvirt` (mode 0770), as with Debian's libvirt-daemon-system:
# a non-root client (a container running as user 65532) reaches it with this supplementary group.
SOCKET_GROUP = "libvirt"
SOCKET_GID = 64056
# libvirtd looks up the user and group records of every unix-socket client's uid and gid and refuses the
# connection without them ("Failed to find user record for uid"): the image's user and group must exist on
# the node.
CLIENT_USER, CLIENT_UID = "virtmigrate", 65532


@dataclass(frozen=True)
class Host:
    """One libvirt host: where it listens and where its files are."""

    name: str
    index: int
    tcp_port: int
    migration_address: str
    migration_port_min: int
    migration_port_max: int
    host_uuid: str
    root: Path  # per-host folders live here

    @property
    def uri(self) -> str:
        """The daemon over loopback TCP: what a peer (or a test) uses to reach it."""
        return f"qemu+tcp://127.0.0.1:{self.tcp_port}/system"

    @property
    def migration_uri(self) -> str:
        """The migration data URI for migrations *to* this host (port chosen from its range)."""
        return f"tcp://{self.migration_address}"

    @property
    def log_dir(self) -> Path:
        """This host's /var/log/libvirt as seen from the machine."""
        return self.root / "log"

    @property
    def qemu_log_dir(self) -> Path:
        """This host's /var/log/libvirt/qemu: domain logs and the guests' serial files."""
        return self.root / "log" / "qemu"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "index": self.index, "tcp_port": self.tcp_port,
                "migration_address": self.migration_address, "migration_port_min": self.migration_port_min,
                "migration_port_max": self.migration_port_max, "host_uuid": self.host_uuid,
                "root": str(self.root)}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Host:
        return cls(name=str(d["name"]), index=int(str(d["index"])), tcp_port=int(str(d["tcp_port"])),
                   migration_address=str(d["migration_address"]),
                   migration_port_min=int(str(d["migration_port_min"])),
                   migration_port_max=int(str(d["migration_port_max"])),
                   host_uuid=str(d["host_uuid"]), root=Path(str(d["root"])))


def _libvirtd_conf(h: Host) -> str:
    return "\n".join([
        "listen_tcp = 1", "listen_tls = 0", 'listen_addr = "127.0.0.1"', f'tcp_port = "{h.tcp_port}"',
        'auth_tcp = "none"', 'auth_unix_rw = "none"', 'auth_unix_ro = "none"',
        f'unix_sock_group = "{SOCKET_GROUP}"', 'unix_sock_rw_perms = "0770"',
        f'host_uuid = "{h.host_uuid}"', "keepalive_interval = 5", "keepalive_count = 5",
        'log_outputs = "3:stderr"', "",
    ])


def _qemu_conf(h: Host) -> str:
    return "\n".join([
        'user = "root"', 'group = "root"', "dynamic_ownership = 0", "remember_owner = 0",
        'security_driver = "none"', "cgroup_controllers = [ ]", "namespaces = [ ]", 'stdio_handler = "file"',
        f'migration_address = "{h.migration_address}"', f'migration_host = "{h.migration_address}"',
        f"migration_port_min = {h.migration_port_min}", f"migration_port_max = {h.migration_port_max}", "",
    ])


def _with_account(text: str, line: str) -> str:
    """`text` (an /etc/passwd or /etc/group) with the entry `line` unless one of that name exists."""
    name = line.split(":", 1)[0]
    if any(x.split(":", 1)[0] == name for x in text.splitlines()):
        return text
    return text.rstrip("\n") + "\n" + line + "\n"


def mount_ns(pid: int) -> str | None:
    """The mount-namespace identity of `pid` (e.g. 'mnt:[4026532281]'), None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _pids_in_ns(ns: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and mount_ns(int(entry.name)) == ns:
            found.append(int(entry.name))
    return found


class LibvirtHosts:
    """`count` libvirt hosts whose state lives under `state/libvirt`.

    Ports and UUIDs are chosen once and recorded in `hosts.json`, so `up` after `up` (or after a
    daemon died) restarts exactly the missing daemons on the same addresses.
    """

    def __init__(self, state: Path, count: int = 2, *, first_address: int = 10,
                 migration_port_base: int = 49152) -> None:
        self.state = state / "libvirt"
        self.count = count
        self.first_address = first_address  # host i migrates on 127.0.0.<first_address + i>
        self.migration_port_base = migration_port_base

    # -- layout ---------------------------------------------------------------------------------

    def _plan(self) -> list[Host]:
        f = self.state / "hosts.json"
        if f.exists():
            hosts = [Host.from_json(d) for d in json.loads(f.read_text())]
            if len(hosts) >= self.count:
                return hosts[: self.count]
        else:
            hosts = []
        for i in range(len(hosts), self.count):
            base = self.migration_port_base + 100 * (self.first_address + i - 10)
            hosts.append(Host(name=f"host{i}", index=i, tcp_port=procs.free_port(),
                              migration_address=f"127.0.0.{self.first_address + i}",
                              migration_port_min=base, migration_port_max=base + 63,
                              host_uuid=str(uuid.uuid4()), root=self.state / f"host{i}"))
        self.state.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps([h.to_json() for h in hosts], indent=2))
        return hosts

    @property
    def hosts(self) -> list[Host]:
        return self._plan()

    def host(self, index: int) -> Host:
        return self.hosts[index]

    def _pidfile(self, h: Host) -> Path:
        return h.root / "tini.pid"

    def pid(self, h: Host) -> int | None:
        """The pid of the host's `tini` (in the host's namespace) while its libvirtd runs."""
        try:
            pid_s, ns = self._pidfile(h).read_text().split()[:2]
            pid = int(pid_s)
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and mount_ns(pid) == ns else None

    def _namespaces(self, h: Host) -> list[str]:
        try:
            return sorted(set((h.root / "namespaces").read_text().split()))
        except OSError:
            return []

    def _prepare(self, h: Host) -> None:
        for sub, _ in _DIR_MOUNTS:
            (h.root / sub).mkdir(parents=True, exist_ok=True)
        (h.root / "log" / "qemu").mkdir(exist_ok=True)
        (h.root / "etc" / "libvirtd.conf").write_text(_libvirtd_conf(h))
        (h.root / "etc" / "qemu.conf").write_text(_qemu_conf(h))
        (h.root / "etc" / "libvirt.conf").write_text("")
        # The QEMU driver resolves its compiled-in default user before reading qemu.conf: give it one,
        # in this host's private /etc/passwd and /etc/group only.
        gid = _QEMU_UID_GID
        passwd = _with_account(
            Path("/etc/passwd").read_text(),
            f"{_QEMU_USER}:x:{gid}:{gid}:libvirt qemu (virtmigrate host):/var/lib/libvirt:/usr/sbin/nologin")
        (h.root / "passwd").write_text(_with_account(
            passwd, f"{CLIENT_USER}:x:{CLIENT_UID}:{CLIENT_UID}:virtmigrate pods:/nonexistent:/usr/sbin/nologin"))
        group = _with_account(Path("/etc/group").read_text(), f"{_QEMU_USER}:x:{gid}:")
        group = _with_account(group, f"{CLIENT_USER}:x:{CLIENT_UID}:")
        (h.root / "group").write_text(_with_account(group, f"{SOCKET_GROUP}:x:{SOCKET_GID}:"))
        for _, mountpoint in _DIR_MOUNTS:
            Path(mountpoint).mkdir(parents=True, exist_ok=True)  # bind targets must exist

    def _start(self, h: Host) -> None:
        binds = [f"mount --bind {shlex.quote(str(h.root / sub))} {mp}" for sub, mp in _DIR_MOUNTS + _FILE_MOUNTS]
        # Supervised as systemd supervises it on a real node (Restart=on-failure): a libvirtd that dies is
        # started again in the same namespace; running guests (QEMU, reparented to tini) survive, and the
        # new daemon reconnects to them from its state in /run/libvirt.
        daemon = ("libvirtd --listen --config /etc/libvirt/libvirtd.conf --pid-file /run/libvirt/libvirtd.pid; "
                  f"echo libvirtd exited with $?, restarting in {RESTART_S}s; sleep {RESTART_S}")
        script = " && ".join([*binds, f"exec tini -s -- sh -c {shlex.quote(f'while :; do {daemon}; done')}"])
        log = open(h.root / "libvirtd.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        ns = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ns = mount_ns(proc.pid)
            if ns is not None and ns != mount_ns(os.getpid()):
                break
            time.sleep(0.01)
        self._pidfile(h).write_text(f"{proc.pid} {ns}\n")
        with open(h.root / "namespaces", "a") as f:  # every namespace ever used, swept by `down`
            f.write(f"{ns}\n")

    def _ready(self, h: Host) -> bool:
        r = subprocess.run(["virsh", "-c", h.uri, "version"], capture_output=True, timeout=10)
        return r.returncode == 0

    def _wait_ready(self, h: Host, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid(h) is None:
                tail = (h.root / "libvirtd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"libvirtd of {h.name} exited; log tail:\n{tail}")
            if self._ready(h):
                return
            time.sleep(0.05)
        raise TimeoutError(f"libvirtd of {h.name} not ready on {h.uri} after {timeout}s")

    # -- lifecycle ------------------------------------------------------------------------------

    def up(self, *, timeout: float = 60.0) -> list[Host]:
        """Start every host that is not running; return all hosts once each answers on its URI (a host whose
        daemon its supervisor is restarting, e.g. after `kill_daemon`, is waited for too)."""
        hosts = self._plan()
        todo = [h for h in hosts if self.pid(h) is None]
        caps = [h.root / "cache" / "qemu" / "capabilities" for h in hosts if self.pid(h) is not None]
        for h in todo:
            self._prepare(h)
        # Start one cold host first and copy its QEMU capabilities cache to the others (~0.2 s starts).
        if todo and not any(c.is_dir() and any(c.iterdir()) for c in caps):
            first, todo = todo[0], todo[1:]
            self._start(first)
            self._wait_ready(first, timeout)
            caps.append(first.root / "cache" / "qemu" / "capabilities")
        seed = next((c for c in caps if c.is_dir() and any(c.iterdir())), None)
        for h in todo:
            dst = h.root / "cache" / "qemu" / "capabilities"
            if seed is not None and not dst.exists():
                shutil.copytree(seed, dst)
            self._start(h)
        for h in hosts:  # a running host's daemon may be restarting under its supervisor (after a crash)
            self._wait_ready(h, timeout)
        return hosts

    def daemon_pid(self, index: int) -> int | None:
        """The pid of host `index`'s libvirtd (under its supervisor), None while it is down."""
        pid = self.pid(self.host(index))
        if pid is None:
            return None
        for sup in _children(pid):
            for child in _children(sup):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{child}/comm").read_text().strip() == "libvirtd":
                        return child
        return None

    def kill_daemon(self, index: int) -> None:
        """SIGKILL host `index`'s libvirtd (a crash, for failure tests); its supervisor restarts it."""
        pid = self.daemon_pid(index)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def down(self) -> None:
        """Destroy all domains, stop all daemons, kill whatever is left in the hosts' namespaces."""
        for h in self._plan():
            pid = self.pid(h)
            if pid is not None:
                self._destroy_all(h)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.02)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # reap it if we started it (else init does)
            for ns in self._namespaces(h):
                if ns == mount_ns(os.getpid()):
                    continue  # never sweep our own namespace
                # QEMUs daemonize out of our process group: find them by namespace.
                for _ in range(100):
                    left = _pids_in_ns(ns)
                    if not left:
                        break
                    for p in left:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(p, signal.SIGKILL)
                    time.sleep(0.02)
            self._pidfile(h).unlink(missing_ok=True)
            (h.root / "namespaces").unlink(missing_ok=True)
            # A killed daemon leaves its runtime state behind; start the next `up` from a clean /run.
            shutil.rmtree(h.root / "run", ignore_errors=True)

    def _destroy_all(self, h: Host) -> None:
        """Destroy and undefine every domain of a running host (best effort, reported by `down`'s check)."""
        import libvirt

        try:
            conn = libvirt.open(h.uri)
        except libvirt.libvirtError:
            return  # daemon not answering: the namespace sweep in `down` kills its QEMUs
        try:
            for dom in conn.listAllDomains():
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
        finally:
            conn.close()

    # -- running things inside a host -------------------------------------------------------------

    def nsenter(self, index: int) -> list[str]:
        """A command prefix that runs the rest inside host `index`'s mount namespace."""
        pid = self.pid(self.host(index))
        if pid is None:
            raise RuntimeError(f"libvirt host{index} is not running; call up() first")
        # Entering a mount namespace resets the working directory to its root: keep ours.
        return ["nsenter", "-t", str(pid), "-m", f"--wd={os.getcwd()}", "--"]

    def run(self, index: int, argv: Sequence[str], *, timeout: float = 60.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside host `index`'s mount namespace and return its output."""
        proc = subprocess.run([*self.nsenter(index), *argv], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} on host{index} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def virsh(self, index: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`virsh -c <host uri> args...` (over TCP, from the machine)."""
        proc = subprocess.run(["virsh", "-c", self.host(index).uri, *args], capture_output=True, text=True,
                              timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"virsh {' '.join(args)} on host{index} failed: {proc.stderr.strip()}")
        return proc
