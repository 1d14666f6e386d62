"""The launcher on real libvirt hosts (TCG guests of our own kernel), run as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.libvirt_fixtures import REPO, Guests, guests, libvirt_hosts, wait_for
from virtmigrate.local.guest import guest_kernel
from virtmigrate.local.libvirthosts import LibvirtHosts

FIXTURES = (libvirt_hosts, guests)  # pytest finds fixtures by name in this module's namespace

pytestmark = [pytest.mark.integration, pytest.mark.libvirt, pytest.mark.timeout(180)]


def test_a_stopped_definition_a_migration_left_on_the_source_is_undefined(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    """The migration's last step (the source's undefine) never ran: its libvirtd died at the switch-over and
    the agent that would have finished it died too. The restarted daemon's recovery stops the source's copy as
    migrated (shutoff reason `migrated`) and keeps its definition, with no job on it: here a migration without
    --undefinesource leaves that same state while the launcher is stopped. The launcher, let go, finds the
    stopped definition libvirt says migrated away and undefines it; the guest runs on, on the destination."""
    hs = libvirt_hosts
    g = guests.start(memory_mib=64, mode="idle", on=0)
    log = tmp_path / "launcher.log"
    with log.open("w") as out:
        launcher = subprocess.Popen(  # start mode adopts the running guest and holds it
            [sys.executable, "-m", "virtmigrate.cmd.launcher", "--mode=start", f"--domain-name={g.name}",
             f"--domain-uuid={g.uuid}", f"--kernel={guest_kernel()}", f"--uri={hs.host(0).uri}"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "VIRTMIGRATE_TERMINATION_LOG": str(tmp_path / "term")})
    try:
        wait_for(lambda: '"holding"' in log.read_text(), 30, "the launcher to hold the guest")
        launcher.send_signal(signal.SIGSTOP)  # it acts on nothing of what follows until it is let go
        # A migration whose source kept its definition (no --undefinesource): what the missing last step leaves.
        hs.virsh(0, "migrate", "--live", "--p2p", "--persistent", g.name, hs.host(1).uri,
                 "--migrateuri", hs.host(1).migration_uri)
        assert g.state_on(hs, 0) == "shut off" and g.persistent_on(hs, 0)
        assert g.state_on(hs, 1) == "running"
        assert "migrated" in hs.virsh(0, "domstate", "--reason", g.name).stdout
        launcher.send_signal(signal.SIGCONT)
        assert launcher.wait(timeout=90) == 0, log.read_text()  # MIGRATED: the guest left by live migration
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGCONT)
            launcher.kill()
    events = [json.loads(line).get("event") for line in log.read_text().splitlines() if line.startswith("{")]
    assert "migrated_definition_undefined" in events, log.read_text()
    assert g.state_on(hs, 0) == "absent"
    assert g.state_on(hs, 1) == "running" and g.persistent_on(hs, 1)


def test_a_guest_that_arrives_after_the_stop_request_is_left_running_not_shut_down(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    """A receive-mode launcher (a migration's target, or a VM controller's probe) is asked to stop, and only
    then does the guest run on its node: a migration that completed despite its cancel, or a guest another
    launcher started there. Holding it would shut it down at once — perhaps its only copy. The launcher
    leaves it running and exits with a reason that does not claim the guest gone (ArrivedAfterStop, 15)."""
    hs = libvirt_hosts
    g = guests.start(memory_mib=64, mode="idle", on=0)
    log, term = tmp_path / "launcher.log", tmp_path / "term"
    with log.open("w") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "virtmigrate.cmd.launcher", "--mode=receive", f"--domain-name={g.name}",
             f"--domain-uuid={g.uuid}", f"--uri={hs.host(1).uri}"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "VIRTMIGRATE_TERMINATION_LOG": str(term)})
    try:
        wait_for(lambda: '"receiving"' in log.read_text(), 30, "the launcher to wait for the guest")
        launcher.send_signal(signal.SIGSTOP)
        launcher.send_signal(signal.SIGTERM)  # pending: it is seen as soon as the launcher runs again
        hs.virsh(0, "migrate", "--live", "--p2p", "--persistent", "--undefinesource", g.name, hs.host(1).uri,
                 "--migrateuri", hs.host(1).migration_uri)
        assert g.state_on(hs, 1) == "running"
        launcher.send_signal(signal.SIGCONT)
        assert launcher.wait(timeout=60) == 15, log.read_text()
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGCONT)
            launcher.kill()
    assert term.read_text().startswith("ArrivedAfterStop: "), term.read_text()
    assert g.state_on(hs, 1) == "running" and g.persistent_on(hs, 1)
    before = len(g.heartbeats(hs, 1))
    wait_for(lambda: len(g.heartbeats(hs, 1)) > before, 30, "the guest to go on running on host 1")
