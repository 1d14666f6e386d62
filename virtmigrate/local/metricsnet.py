"""The network namespace a node runner cluster's controller serves /metrics in.

With the node runner the controller is a process on this machine, outside the cluster, and Prometheus finds
it through the EndpointSlice the local cluster writes for the metrics Service. The API server refuses
loopback addresses there (`may not be in the loopback range`), and this project sends traffic only to
127.0.0.0/8 or into network namespaces it made. So the cluster makes one: a namespace `virtmigrate-<n>`
with a veth pair on a private /30, 10.255.<n>.1 on our side (`vmig<n>`), 10.255.<n>.2 inside (`eth0`),
n being the cluster's first loopback address (unique among the clusters of a machine). The controller's
supervisor binds the metrics socket *inside* the namespace (`listen_in`) and hands it to the controller
as an inherited descriptor (`--metrics-fd`, systemd's socket activation in spirit); the controller
itself stays in this machine's namespace and talks to the API server on 127.0.0.1. Prometheus scrapes
10.255.<n>.2, an address of a namespace we made; nothing else is ever reached.

Made by LocalCluster before it starts the controller (`up`), removed by its `down` (`down`); `present`
says what of it exists (the leftovers check). `metrics_net` and the command builders are pure.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from virtmigrate import errors

NETNS_DIR = Path("/run/netns")  # where `ip netns` pins named namespaces
CLONE_NEWNET = 0x40000000
PORT = 8080  # the manifests' metrics port: the namespace is ours alone, so it is always free


@dataclass(frozen=True)
class MetricsNet:
    """One cluster's metrics namespace and the veth pair into it."""

    index: int      # the cluster's first loopback address's last byte, which names all of it
    netns: str      # the `ip netns` name
    link: str       # our end of the veth pair, in this machine's namespace
    peer: str       # its other end, inside the namespace
    host_ip: str    # our end's address
    address: str    # the namespace's address: where the controller listens, what the EndpointSlice names
    prefix: int     # both ends' prefix length (a /30: the two of them)

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.netns


def metrics_net(index: int) -> MetricsNet:
    """The metrics namespace of the cluster whose first loopback address is 127.0.0.<index>."""
    if not 0 <= index <= 255:
        raise ValueError(f"a cluster's first address is 0..255, not {index}")
    return MetricsNet(index=index, netns=f"virtmigrate-{index}", link=f"vmig{index}", peer="eth0",
                      host_ip=f"10.255.{index}.1", address=f"10.255.{index}.2", prefix=30)


def up_commands(net: MetricsNet) -> list[list[str]]:
    """`ip` commands that make `net` from nothing."""
    inside = ["ip", "-n", net.netns]
    return [["ip", "netns", "add", net.netns],
            ["ip", "link", "add", net.link, "type", "veth", "peer", "name", net.peer, "netns", net.netns],
            ["ip", "addr", "add", f"{net.host_ip}/{net.prefix}", "dev", net.link],
            [*inside, "addr", "add", f"{net.address}/{net.prefix}", "dev", net.peer],
            [*inside, "link", "set", "lo", "up"],
            [*inside, "link", "set", net.peer, "up"],
            ["ip", "link", "set", net.link, "up"]]


def down_commands(net: MetricsNet, present: list[str]) -> list[list[str]]:
    """`ip` commands that remove what of `net` is `present` (deleting one end of a veth deletes both)."""
    out = []
    if f"link {net.link}" in present:
        out.append(["ip", "link", "del", net.link])
    if f"netns {net.netns}" in present:
        out.append(["ip", "netns", "del", net.netns])
    return out


def present(net: MetricsNet) -> list[str]:
    """What of `net` exists on this machine."""
    return ([f"netns {net.netns}"] if net.path.exists() else []) + (
        [f"link {net.link}"] if Path("/sys/class/net", net.link).exists() else [])


def up(net: MetricsNet) -> None:
    """Make `net` unless it is complete; a partial one (an interrupted `up`) is made again."""
    found = present(net)
    if len(found) == 2:
        return
    for cmd in [*down_commands(net, found), *up_commands(net)]:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise errors.ConfigError(f"the controller's metrics namespace: `{' '.join(cmd)}` failed: "
                                     f"{proc.stderr.strip()}")


def down(net: MetricsNet) -> bool:
    """Remove `net`; True if anything of it existed."""
    found = present(net)
    for cmd in down_commands(net, found):
        subprocess.run(cmd, check=False, capture_output=True, timeout=30)
    return bool(found)


def listen_in(netns: Path | None, host: str, port: int) -> socket.socket:
    """A TCP socket listening on `host`:`port` inside network namespace `netns` (a pinned namespace file;
    None: the caller's own). Only a short-lived thread enters the namespace: a socket belongs to the
    namespace it was made in, and the calling process never leaves its own."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_bind() -> None:
        try:
            if netns is not None:
                _enter(netns)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(64)
            made.append(s)
        except BaseException as e:  # re-raised in the caller's thread
            failed.append(e)

    t = threading.Thread(target=enter_and_bind, name="listen-in-netns")
    t.start()
    t.join()
    if failed:
        raise failed[0]
    return made[0]


def _enter(netns: Path) -> None:
    """The calling thread joins network namespace `netns` (setns(2); Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)
