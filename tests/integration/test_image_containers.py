"""The built image (`make image`), run the way a node runs it, through testcontainers.

The test session starts podman's Docker-compatible API service on a socket of its own, with a private
storage and the containers.conf these machines need (no rlimits raised, runc, cgroupfs:
shared/notes/real-nodes.md); testcontainers talks to it through DOCKER_HOST, its Ryuk reaper disabled (its
image cannot be pulled here; every container is removed by the fixtures instead). The images come from the
OCI archive hack/image.sh builds (a cached archive makes this quick).

Every container runs as the image's non-root user on a read-only root filesystem, with host networking
and, where it needs libvirt, the node's libvirt socket folder mounted at /run/libvirt and the socket's
group added — as the install doc asks of agent and launcher pods.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.integration.libvirt_fixtures import Guests, guests, libvirt_hosts, wait_for
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.launcher.exitcodes import ExitCode as LauncherExit
from virtmigrate.local import procs
from virtmigrate.local.guest import guest_kernel
from virtmigrate.local.libvirthosts import SOCKET_GID, LibvirtHosts

FIXTURES = (libvirt_hosts, guests)  # pytest finds fixtures by name in this module's namespace
REPO = Path(__file__).resolve().parent.parent.parent
USER = "65532"  # the image's user (Containerfile)

pytestmark = [pytest.mark.integration, pytest.mark.libvirt, pytest.mark.timeout(900)]

CONTAINERS_CONF = """[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


@dataclass(frozen=True)
class Images:
    tag: str

    def ref(self, target: str) -> str:
        return f"localhost/virtmigrate/{target}:{self.tag}"


@pytest.fixture(scope="session")
def images() -> Iterator[Images]:
    """The image built by hack/image.sh, loaded into a podman API service of this session."""
    build = subprocess.run(["bash", str(REPO / "hack" / "image.sh")], capture_output=True, text=True,
                           timeout=1500, env={**os.environ, "PYTHON": sys.executable})
    assert build.returncode == 0, f"hack/image.sh failed:\n{build.stderr[-4000:]}"
    archive = Path(build.stdout.split()[-1])
    tag = archive.name.removeprefix("virtmigrate-").removesuffix(".oci.tar")

    d = Path(tempfile.mkdtemp(prefix="virtmigrate-podman-"))
    (d / "containers.conf").write_text(CONTAINERS_CONF)
    (d / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{d / "storage"}"\n'
                                    f'runroot = "{d / "run"}"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(d / "containers.conf"),
           "CONTAINERS_STORAGE_CONF": str(d / "storage.conf")}
    sock = d / "podman.sock"
    log = open(d / "service.log", "wb")  # noqa: SIM115 - handed to the child
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    mp = pytest.MonkeyPatch()
    try:
        for target in ("controller", "agent", "launcher"):
            subprocess.run(["podman", "pull", "-q", f"oci-archive:{archive}:virtmigrate/{target}:{tag}"],
                           env=env, check=True, capture_output=True, timeout=600)
        _wait(lambda: sock.exists() and _ping(sock), 30, "podman's API service")
        mp.setenv("DOCKER_HOST", f"unix://{sock}")
        mp.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
        yield Images(tag)
    finally:
        mp.undo()
        subprocess.run(["podman", "rm", "--all", "--force", "--time=0"], env=env, capture_output=True, timeout=120)
        service.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.wait(timeout=15)
        if service.poll() is None:
            service.kill()
            service.wait(timeout=15)
        subprocess.run(["podman", "rmi", "--all", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


def _ping(sock: Path) -> bool:
    r = subprocess.run(["curl", "-sf", "--unix-socket", str(sock), "http://d/_ping"], capture_output=True,
                       text=True, timeout=10)
    return r.returncode == 0 and r.stdout.strip() == "OK"


def _wait(cond: Callable[[], object], timeout: float, what: str, ctr: Any = None) -> None:
    """Poll `cond`; on timeout fail naming `what`, with the last log lines of `ctr` when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    logs = ctr.logs().decode(errors="replace")[-3000:] if ctr is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                         + (f"; container log:\n{logs}" if logs else ""))


@contextlib.contextmanager
def container(image: str, *args: str, volumes: tuple[tuple[str, str, str], ...] = (),
              env: dict[str, str] | None = None, **kwargs: Any) -> Iterator[Any]:
    """A started container (docker-py's object) as a node runs ours: non-root, read-only root, host network."""
    from testcontainers.core.container import DockerContainer

    c = DockerContainer(image).with_command(list(args)).with_tmpfs_mount("/tmp", "size=16m").with_envs(**(env or {}))
    c = c.with_kwargs(user=USER, read_only=True, network_mode="host", **kwargs)
    for host, inside, mode in volumes:
        c = c.with_volume_mapping(host, inside, mode)
    c.start()
    try:
        yield c.get_wrapped_container()
    finally:
        c.stop()


def _runs_as_non_root_on_a_read_only_root(ctr: Any) -> None:
    ctr.reload()
    assert ctr.attrs["HostConfig"]["ReadonlyRootfs"] is True
    uid = ctr.exec_run(["sh", "-c", "id -u"], user="")
    assert uid.output.decode().strip() == USER
    touch = ctr.exec_run(["sh", "-c", "touch /opt/virtmigrate/x"])
    assert touch.exit_code != 0 and b"Read-only file system" in touch.output


def _standalone_kubeconfig(src: Path, dst: Path) -> None:
    """`src` with its certificate files inlined, so it works from inside a container."""
    cfg = yaml.safe_load(src.read_text())
    for section, fields in (("clusters", ("certificate-authority",)),
                            ("users", ("client-certificate", "client-key"))):
        for entry in cfg.get(section) or []:
            body = entry.get(section[:-1]) or {}
            for f in fields:
                if f in body:
                    body[f"{f}-data"] = base64.b64encode(Path(body.pop(f)).read_bytes()).decode()
    dst.write_text(json.dumps(cfg))
    dst.chmod(0o644)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_the_controller_in_the_image_becomes_healthy_against_a_real_api_server(
        images: Images, cluster: Cluster, crds: None, tmp_path: Path) -> None:
    kube = tmp_path / "kube"
    kube.mkdir(mode=0o755)
    _standalone_kubeconfig(cluster.kubeconfig, kube / "config")
    port = procs.free_port()
    with container(images.ref("controller"), "--kubeconfig=/kube/config", f"--metrics-address=127.0.0.1:{port}",
                   "--log-format=json", volumes=((str(kube), "/kube", "ro"),)) as ctr:
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: _http_ok(base + "/readyz"), 60, "the controller's /readyz", ctr)
        assert _http_ok(base + "/healthz")
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert b"virtmigrate_migration_duration_seconds" in r.read()
        _runs_as_non_root_on_a_read_only_root(ctr)


def test_the_launcher_in_the_image_runs_a_guest_through_the_node_socket_and_stops_it_on_sigterm(
        images: Images, libvirt_hosts: LibvirtHosts, tmp_path: Path) -> None:
    host = libvirt_hosts.host(0)
    term = tmp_path / "term"
    term.mkdir(mode=0o777)
    term.chmod(0o777)
    name, uid = f"launched-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    try:
        with container(images.ref("launcher"), "--mode=start", f"--domain-name={name}", f"--domain-uuid={uid}",
                       f"--memory-bytes={64 << 20}", f"--kernel={guest_kernel()}", "--cmdline=mode=idle",
                       volumes=((str(host.root / "run"), "/run/libvirt", "rw"), (str(term), "/term", "rw")),
                       group_add=[str(SOCKET_GID)],
                       env={"VIRTMIGRATE_TERMINATION_LOG": "/term/log"}) as ctr:
            serial = host.qemu_log_dir / f"{name}-serial.log"
            _wait(lambda: "heartbeat" in (serial.read_text(errors="replace") if serial.exists() else ""), 60,
                  "the guest's heartbeat on host0", ctr)
            assert libvirt_hosts.virsh(0, "domstate", uid).stdout.strip() == "running"
            probe = ctr.exec_run(["virtmigrate-launcher", "--probe", "--mode=start", f"--domain-name={name}"])
            assert probe.exit_code == 0, probe.output.decode()
            _runs_as_non_root_on_a_read_only_root(ctr)
            ctr.stop(timeout=30)  # SIGTERM: the launcher shuts its guest down
            ctr.reload()
            assert ctr.attrs["State"]["ExitCode"] == LauncherExit.OK, ctr.logs().decode()[-3000:]
        assert (term / "log").read_text().startswith("StoppedOnRequest:")
        state = libvirt_hosts.virsh(0, "domstate", uid, check=False)
        assert state.returncode != 0 or state.stdout.strip() == "shut off", state.stdout
    finally:
        libvirt_hosts.virsh(0, "destroy", uid, check=False)
        libvirt_hosts.virsh(0, "undefine", uid, check=False)


def test_the_agent_in_the_image_migrates_a_guest_between_two_hosts_and_exits_succeeded(
        images: Images, libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=64)
    dst = libvirt_hosts.host(1)
    term = tmp_path / "term"
    term.mkdir()
    term.chmod(0o777)
    with container(images.ref("agent"), f"--domain={g.name}", f"--destination-uri={dst.uri}",
                   f"--migration-uri={dst.migration_uri}", "--termination-message-path=/term/result.json",
                   volumes=((str(libvirt_hosts.host(0).root / "run"), "/run/libvirt", "rw"),
                            (str(term), "/term", "rw")),
                   group_add=[str(SOCKET_GID)]) as ctr:
        status = ctr.wait(timeout=120)
        logs = ctr.logs().decode(errors="replace")
    assert status["StatusCode"] == ExitCode.SUCCEEDED, logs[-3000:]
    result = json.loads((term / "result.json").read_text())
    assert (result["exitCode"], result["reason"]) == (ExitCode.SUCCEEDED, "Migrated"), result
    assert g.state_on(libvirt_hosts, 1) == "running" and g.persistent_on(libvirt_hosts, 1)
    assert g.state_on(libvirt_hosts, 0) == "absent"
    before = len(g.heartbeats(libvirt_hosts, 1))
    wait_for(lambda: len(g.heartbeats(libvirt_hosts, 1)) >= before + 2, 10, "heartbeats continuing on host1")
