"""The migration agent on two real libvirt hosts (TCG guests of our own kernel), run as a real subprocess.

Each test asserts where the guest ends up and what the agent reported, the things the controller and
the user rely on.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.libvirt_fixtures import (
    Guests,
    finish_agent,
    guests,
    libvirt_hosts,
    run_agent,
    start_agent,
    wait_for,
    wait_for_migration_job,
)
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.local import procs
from virtmigrate.local.libvirthosts import LibvirtHosts

FIXTURES = (libvirt_hosts, guests)  # pytest finds fixtures by name in this module's namespace

pytestmark = [pytest.mark.integration, pytest.mark.libvirt, pytest.mark.timeout(120)]

# A guest rewriting all of its RAM never converges under this cap without help (see the notes).
CAP = ["--bandwidth", "64"]


def test_idle_guest_migrates_and_its_heartbeat_continues_on_the_destination(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=64, mode="idle")
    wait_for(lambda: len(g.heartbeats(libvirt_hosts, 0)) >= 1, 10, "a heartbeat on the source")
    run = run_agent(libvirt_hosts, g.name, tmp_path)
    assert run.returncode == ExitCode.SUCCEEDED, run.stderr
    assert run.result["outcome"] == "succeeded" and run.result["mode"] == "pre-copy"
    assert isinstance(run.result["downtimeMs"], int) and run.result["dataTotal"] >= 64 << 20  # type: ignore[operator]
    assert g.state_on(libvirt_hosts, 0) == "absent"
    assert g.state_on(libvirt_hosts, 1) == "running" and g.persistent_on(libvirt_hosts, 1)
    # the guest keeps beating on the destination, counting on from where it was (its RAM moved with it)
    last_on_source = g.heartbeats(libvirt_hosts, 0)[-1]
    wait_for(lambda: len(g.heartbeats(libvirt_hosts, 1)) >= 2, 10, "two heartbeats on the destination")
    assert g.heartbeats(libvirt_hosts, 1)[0] >= last_on_source
    logs = run.logs()
    assert logs and all(entry.get("domain") == g.name for entry in logs)  # JSON logs bound to the domain


def test_ram_rewriting_guest_under_a_cap_is_rescued_by_post_copy(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=128, mode="rewrite")
    run = run_agent(libvirt_hosts, g.name, tmp_path,
                    extra=[*CAP, "--allow-post-copy", "--completion-timeout-per-gib", "20"])
    assert run.returncode == ExitCode.SUCCEEDED, run.stderr
    assert run.result["mode"] == "post-copy"
    assert any(str(a).startswith("start_post_copy") for a in run.result["actions"])  # type: ignore[attr-defined]
    assert g.state_on(libvirt_hosts, 0) == "absent" and g.state_on(libvirt_hosts, 1) == "running"
    wait_for(lambda: len(g.heartbeats(libvirt_hosts, 1)) >= 2, 10, "the guest to run on the destination")


def test_ram_rewriting_guest_is_aborted_on_completion_timeout_when_post_copy_is_not_allowed(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=128, mode="rewrite")
    run = run_agent(libvirt_hosts, g.name, tmp_path, extra=[*CAP, "--completion-timeout-per-gib", "5"])
    assert run.returncode == ExitCode.ABORTED_COMPLETION_TIMEOUT, run.stderr
    assert run.result["reason"] == "CompletionTimeout"
    assert g.state_on(libvirt_hosts, 0) == "running" and g.state_on(libvirt_hosts, 1) == "absent"
    beats = len(g.heartbeats(libvirt_hosts, 0))
    wait_for(lambda: len(g.heartbeats(libvirt_hosts, 0)) > beats, 10, "the guest to keep running on the source")


def test_ram_rewriting_guest_is_paused_as_a_last_resort_when_allowed(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=128, mode="rewrite")
    run = run_agent(libvirt_hosts, g.name, tmp_path, extra=[*CAP, "--allow-pause", "--completion-timeout-per-gib", "4"])
    assert run.returncode == ExitCode.SUCCEEDED, run.stderr
    assert run.result["mode"] == "paused"
    assert g.state_on(libvirt_hosts, 0) == "absent" and g.state_on(libvirt_hosts, 1) == "running"
    wait_for(lambda: len(g.heartbeats(libvirt_hosts, 1)) >= 2, 10, "the guest to run again on the destination")


def test_sigterm_mid_flight_cancels_and_leaves_the_guest_on_the_source(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=128, mode="rewrite")
    proc, term = start_agent(libvirt_hosts, g.name, tmp_path, extra=CAP)
    wait_for_migration_job(libvirt_hosts, g)
    proc.send_signal(signal.SIGTERM)
    run = finish_agent(proc, term)
    assert run.returncode == ExitCode.CANCELLED, run.stderr
    assert run.result["outcome"] == "cancelled" and "SIGTERM" in str(run.result["message"])
    assert g.state_on(libvirt_hosts, 0) == "running" and g.persistent_on(libvirt_hosts, 0)
    assert g.state_on(libvirt_hosts, 1) == "absent"
    beats = len(g.heartbeats(libvirt_hosts, 0))
    wait_for(lambda: len(g.heartbeats(libvirt_hosts, 0)) > beats, 10, "the guest to keep running on the source")


def test_destination_daemon_killed_mid_flight_fails_and_leaves_the_guest_on_the_source(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=128, mode="rewrite")
    proc, term = start_agent(libvirt_hosts, g.name, tmp_path, extra=CAP)
    try:
        wait_for_migration_job(libvirt_hosts, g)
        libvirt_hosts.kill_daemon(1)
        run = finish_agent(proc, term)
    finally:
        libvirt_hosts.up()  # the session's destination host comes back for the next tests
    assert run.returncode == ExitCode.MIGRATION_FAILED, run.stderr
    assert run.result["reason"] == "MigrationFailed"
    assert g.state_on(libvirt_hosts, 0) == "running"
    wait_for(lambda: g.state_on(libvirt_hosts, 1) == "absent", 10, "no domain on the restarted destination")


def test_unknown_domain_exits_with_its_code_and_a_clear_message(
        libvirt_hosts: LibvirtHosts, tmp_path: Path) -> None:
    run = run_agent(libvirt_hosts, "no-such-guest", tmp_path)
    assert run.returncode == ExitCode.DOMAIN_NOT_FOUND
    assert run.result["reason"] == "DomainNotFound"
    assert "'no-such-guest' not found" in str(run.result["message"])


def test_unreachable_destination_exits_with_its_code(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=32, mode="idle")
    closed = procs.free_port()  # nothing listens here
    argv_extra = ["--destination-uri", f"qemu+tcp://127.0.0.1:{closed}/system"]
    run = run_agent(libvirt_hosts, g.name, tmp_path, extra=argv_extra)
    assert run.returncode == ExitCode.DESTINATION_UNREACHABLE, run.stderr
    assert str(closed) in str(run.result["message"])
    assert g.state_on(libvirt_hosts, 0) == "running"


def test_invalid_arguments_exit_with_their_code_and_name_the_flag(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    term = tmp_path / "term.json"
    proc = subprocess.run([sys.executable, "-m", "virtmigrate.cmd.agent", "--destination-uri", "qemu:///x",
                           "--termination-message-path", str(term)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.INVALID_ARGUMENTS
    result = json.loads(term.read_text())
    assert result["reason"] == "InvalidAgentArguments" and "--domain" in result["message"]


def test_a_stopped_copy_the_source_kept_is_undefined_but_never_a_running_one(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    """What a source libvirtd killed at the switch-over can leave (found by the chaos campaign, seed 3 round 66):
    the guest runs, persistent, on the destination, while the restarted source daemon keeps a stopped
    definition of it, because the job's last step (the source's undefine) never ran. The agent's verification
    completes that step, as VIR_MIGRATE_UNDEFINE_SOURCE would have; a running copy is never touched."""
    import libvirt

    from virtmigrate.agent.migrate import Migrator
    from virtmigrate.agent.monitor import Cancel
    from virtmigrate.agent.settings import Settings
    from virtmigrate.agent.verify import decide_success
    from virtmigrate.clock import RealClock
    from virtmigrate.jsonlog import JsonLogger
    from virtmigrate.local.guest import GuestSpec, domain_xml, guest_kernel

    hs = libvirt_hosts
    g = guests.start(memory_mib=64, mode="idle", on=1)  # landed: runs on the destination (defined there)
    xml = tmp_path / "stale.xml"
    xml.write_text(domain_xml(GuestSpec(g.name, g.uuid, guest_kernel(), 64, "idle")))
    hs.virsh(0, "define", str(xml))  # the stopped copy the source kept
    migrator = Migrator(Settings(domain=g.name, destination_uri=hs.host(1).uri, source_uri=hs.host(0).uri),
                        Cancel(), clock=RealClock(), log=JsonLogger())
    src, dst = libvirt.open(hs.host(0).uri), libvirt.open(hs.host(1).uri)
    try:
        placed = migrator.placement_settled(src, dst, g.uuid, want_source=True)
        assert decide_success(placed) == ""
        assert g.state_on(hs, 0) == "absent" and g.state_on(hs, 1) == "running" and g.persistent_on(hs, 1)

        hs.virsh(0, "define", str(xml))
        hs.virsh(0, "start", g.name)  # a running copy on the source: both run, and neither is touched
        both = migrator.placement_settled(src, dst, g.uuid, want_source=True)
        assert both.source_active and both.destination_running
        assert g.state_on(hs, 0) == "running" and g.state_on(hs, 1) == "running"
    finally:
        src.close()
        dst.close()
