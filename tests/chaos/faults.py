"""Doing harm to one local cluster, and what its supervisors would do afterwards.

Used by campaign.py. Every pid comes from the cluster's own state directory (pid files of the node runner,
the controller, the control plane, each pod's containers, each libvirt host's tini), and is checked against
the process's start time or command line before a signal is sent, so nothing outside the cluster is touched.
A killed controller or node runner is restarted with the very argv and environment it had (read from /proc
before the kill), as a Deployment or systemd would; the API server through `ControlPlane.up()`. A node's
libvirtd is *not* restarted here: supervising it is the product's job (issue 11, section 2), and
`libvirtd_back` only says whether someone did.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtmigrate.local import procs
from virtmigrate.local.noderunner.container import pid_record


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"




def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _alive(pid)


def container_pid(lc: Any, pod_uid: str, container: str) -> int | None:
    """The live process of a pod's container: the child of the shim the node runner's pid file names (pid,
    start time, node) — the container's own command, not the shim that waits for it."""
    rec = pid_record(Path(lc.state) / "pods" / pod_uid / f"{container}.pid")
    if rec is None or procs.start_ticks(rec[0]) != rec[1]:
        return None
    pid = rec[0]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def kill_container(lc: Any, pod_uid: str, container: str) -> int | None:
    """SIGKILL a container's process (an OOM kill or a crash); returns its pid, None when none ran."""
    pid = container_pid(lc, pod_uid, container)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return pid


@dataclass
class Killed:
    """A supervised process that was SIGKILLed, with what it takes to start it again as it was."""

    name: str           # the pid-file name under <state>/pids
    argv: list[str]
    env: dict[str, str]
    pid: int

    def restart(self, lc: Any) -> None:
        if self.name == "controller":
            lc.start_controller()  # under its supervisor again, as `cluster up` starts it
            return
        procs.start(self.name, self.argv, Path(lc.state), env=self.env)


def kill_supervised(lc: Any, name: str) -> Killed | None:
    """SIGKILL the process group of the cluster's `name` process ("controller" or "noderunner")."""
    f = Path(lc.state) / "pids" / f"{name}.pid"
    try:
        pid = int(f.read_text().split()[0])
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]
        env = dict(kv.decode().split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                   if b"=" in kv)
    except (OSError, ValueError):
        return None
    if not procs.alive(name, Path(lc.state)):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _wait_dead(pid)
    return Killed(name, argv, env, pid)


def kill_apiserver(lc: Any) -> int | None:
    """SIGKILL kube-apiserver; `restart_apiserver` brings it back."""
    f = lc.control_plane.state / "pids" / "kube-apiserver.pid"
    try:
        pid = int(f.read_text().split()[0])
    except (OSError, ValueError):
        return None
    if not procs.alive("kube-apiserver", lc.control_plane.state):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    return pid


def restart_apiserver(lc: Any) -> None:
    lc.control_plane.up(timeout=60)


def kill_libvirtd(lc: Any, node: str) -> int | None:
    """SIGKILL the libvirtd of `node` and nothing else: its guests' QEMUs live on, as after a daemon crash
    (`LibvirtHosts.kill_daemon`: the daemon under its supervisor, which restarts it as systemd would).
    Returns libvirtd's pid, None when it is not running."""
    index = int(node.removeprefix("node"))
    pid: int | None = lc.hosts.daemon_pid(index)
    if pid is None:
        return None
    lc.hosts.kill_daemon(index)
    _wait_dead(pid, timeout=5)
    return pid


def libvirtd_back(lc: Any, node: str) -> bool:
    """The node's libvirtd runs again and answers (someone — the product — restarted it)."""
    index = int(node.removeprefix("node"))
    h = lc.hosts.host(index)
    if lc.hosts.daemon_pid(index) is None:
        return False
    r = subprocess.run(["virsh", "-c", h.uri, "version"], capture_output=True, timeout=10)
    return r.returncode == 0


def restore_libvirtd(lc: Any) -> None:
    """What the harness does when nobody restarted a killed libvirtd: start it, so later rounds have nodes."""
    lc.hosts.up(timeout=60)


def kubectl(lc: Any, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    from tests.conftest import KUBECTL

    return subprocess.run([KUBECTL, f"--kubeconfig={lc.kubeconfig}", *args], capture_output=True, text=True,
                          timeout=timeout)
