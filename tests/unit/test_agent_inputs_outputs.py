"""The agent's flags/env, its termination message, its placement verdicts and progress payloads."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from virtmigrate.agent.jobstats import JOB_UNBOUNDED, MIB, JobStats, Mode
from virtmigrate.agent.progress import compute_progress, should_report_progress
from virtmigrate.agent.result import MAX_TERMINATION_MESSAGE, Result, termination_message
from virtmigrate.agent.settings import parse_settings
from virtmigrate.agent.verify import Placement, decide_still_on_source, decide_success, stale_source_copy
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.errors import ConfigError

REQUIRED = ["--domain", "vm1", "--destination-uri", "qemu+tcp://10.0.0.2/system"]


def test_flags_with_defaults() -> None:
    s = parse_settings(REQUIRED, {})
    assert (s.domain, s.source_uri, s.termination_message_path) == ("vm1", "qemu:///system", "/dev/termination-log")
    p = s.policy
    assert (p.bandwidth_mibps, p.completion_timeout_per_gib_s, p.progress_timeout_s) == (0, 150.0, 150.0)
    assert not (p.allow_post_copy or p.allow_pause or p.allow_auto_converge)


def test_every_flag_reads_its_environment_variable_and_flags_win() -> None:
    env = {"VIRTMIGRATE_DOMAIN": "from-env", "VIRTMIGRATE_DESTINATION_URI": "qemu+tcp://d/system",
           "VIRTMIGRATE_BANDWIDTH_MIBPS": "64", "VIRTMIGRATE_ALLOW_POST_COPY": "true",
           "VIRTMIGRATE_ALLOW_PAUSE": "0", "VIRTMIGRATE_MAX_DOWNTIME_MS": "300"}
    s = parse_settings(["--domain", "from-flag"], env)
    assert s.domain == "from-flag" and s.destination_uri == "qemu+tcp://d/system"
    assert (s.policy.bandwidth_mibps, s.policy.allow_post_copy, s.policy.allow_pause,
            s.policy.max_downtime_ms) == (64, True, False, 300)


@pytest.mark.parametrize(("argv", "env", "names"), [
    pytest.param([], {}, "--domain", id="missing-domain"),
    pytest.param(["--domain", "x"], {}, "--destination-uri", id="missing-destination"),
    pytest.param([*REQUIRED, "--bandwidth", "-1"], {}, "--bandwidth", id="negative-bandwidth"),
    pytest.param(REQUIRED, {"VIRTMIGRATE_BANDWIDTH_MIBPS": "fast"}, "VIRTMIGRATE_BANDWIDTH_MIBPS", id="bad-env"),
    pytest.param([*REQUIRED, "--allow-post-copy", "maybe"], {}, "--allow-post-copy", id="bad-bool"),
    pytest.param([*REQUIRED, "--migration", "m1"], {}, "--namespace", id="migration-without-namespace"),
    pytest.param([*REQUIRED, "--bogus"], {}, "--bogus", id="unknown-flag"),
])
def test_invalid_input_names_the_flag(argv: list[str], env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        parse_settings(argv, env)


def test_termination_message_has_the_result_fields() -> None:
    r = Result(ExitCode.SUCCEEDED, "vm1 runs on dst", duration_s=1.23456, data_total=256 * MIB,
               data_processed=250 * MIB, downtime_ms=42, iterations=3, mode=Mode.POST_COPY,
               actions=("start_post_copy: x",))
    doc = json.loads(termination_message(r))
    assert doc == {"outcome": "succeeded", "exitCode": 0, "reason": "Migrated", "message": "vm1 runs on dst",
                   "durationSeconds": 1.235, "downtimeMs": 42, "dataTotal": 256 * MIB, "dataProcessed": 250 * MIB,
                   "iterations": 3, "mode": "post-copy", "actions": ["start_post_copy: x"]}


def test_termination_message_fits_4kib_keeping_first_and_latest_actions() -> None:
    actions = tuple(f"set_downtime {i}ms: step at {i}.0s " + "x" * 60 for i in range(200))
    r = Result(ExitCode.ABORTED_COMPLETION_TIMEOUT, "m" * 3000, actions=(*actions, "abort: the reason"))
    text = termination_message(r)
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    doc = json.loads(text)
    assert doc["exitCode"] == 21 and doc["reason"] == "CompletionTimeout"
    assert doc["actions"][0].startswith("set_downtime 0ms") and doc["actions"][-1] == "abort: the reason"
    assert any(a.startswith("... ") and "more" in a for a in doc["actions"])


_GONE = dict(source_defined=False, source_active=False)


@pytest.mark.parametrize(("placement", "problem"), [
    pytest.param(Placement(**_GONE, destination_defined=True, destination_running=True,
                           destination_persistent=True), "", id="migrated"),
    pytest.param(Placement(**_GONE, destination_defined=True, destination_running=True,
                           destination_persistent=False), "not persistent", id="transient-on-destination"),
    pytest.param(Placement(True, True, True, True, True), "still defined on the source", id="left-on-source"),
    pytest.param(Placement(**_GONE, destination_defined=False, destination_running=False,
                           destination_persistent=False), "absent from the destination", id="lost"),
])
def test_decide_success(placement: Placement, problem: str) -> None:
    out = decide_success(placement)
    assert (problem in out) if problem else out == ""


@pytest.mark.parametrize(("placement", "ok"), [
    pytest.param(Placement(True, True, False, False, False), True, id="on-source"),
    pytest.param(Placement(True, False, False, False, False), False, id="stopped-on-source"),
    pytest.param(Placement(True, True, True, True, False), False, id="on-both"),
    pytest.param(Placement(False, False, False, False, False, source_reachable=False), False, id="source-silent"),
])
def test_decide_still_on_source(placement: Placement, ok: bool) -> None:
    assert (decide_still_on_source(placement) == "") is ok


def test_a_source_that_does_not_answer_is_never_taken_for_one_the_guest_left() -> None:
    """A dead connection to the source (its libvirtd restarting) says nothing: not 'gone from the source'."""
    silent = Placement(False, False, True, True, True, source_reachable=False)
    assert "unknown state on the source" in decide_success(silent)


@pytest.mark.parametrize(("placement", "stale"), [
    pytest.param(Placement(True, False, True, True, True), True, id="stopped-copy-left-landed"),
    pytest.param(Placement(True, True, True, True, True), False, id="source-still-runs"),
    pytest.param(Placement(True, False, True, True, False), False, id="destination-not-persistent"),
    pytest.param(Placement(True, False, True, False, False), False, id="not-running-on-destination"),
    pytest.param(Placement(True, False, True, True, True, source_reachable=False), False, id="source-silent"),
])
def test_only_a_stopped_source_copy_of_a_landed_guest_is_libvirts_unfinished_undefine(
        placement: Placement, stale: bool) -> None:
    assert stale_source_copy(placement) is stale


def test_progress_payload_and_rate_limit() -> None:
    stats = JobStats(job_type=JOB_UNBOUNDED, data_total=200, data_processed=150, data_remaining=50,
                     memory_bps=1000, dirty_rate_pps=7, iteration=2)
    p = compute_progress(stats, Mode.PRE_COPY, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert p == {"percent": 75, "percentText": "75%", "dataTotal": 200, "dataProcessed": 150, "dataRemaining": 50,
                 "transferRate": 1000, "dirtyRate": 7, "iteration": 2, "mode": "pre-copy",
                 "updateTime": "2026-01-01T00:00:00Z"}
    assert should_report_progress(10.0, None) and not should_report_progress(11.9, 10.0)
    assert should_report_progress(12.0, 10.0)


def test_migration_call_follows_the_policy() -> None:
    import libvirt

    from virtmigrate.agent.migrate import MIGRATE_FLAGS, migration_flags, migration_params

    plain = parse_settings([*REQUIRED, "--migration-uri", "tcp://10.0.0.2"], {})
    assert migration_flags(plain) == MIGRATE_FLAGS
    assert MIGRATE_FLAGS & libvirt.VIR_MIGRATE_PEER2PEER and MIGRATE_FLAGS & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    assert migration_params(plain) == {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.0.0.2"}
    rich = parse_settings([*REQUIRED, "--bandwidth", "64", "--allow-post-copy", "--allow-auto-converge"], {})
    assert migration_flags(rich) & libvirt.VIR_MIGRATE_POSTCOPY
    assert migration_flags(rich) & libvirt.VIR_MIGRATE_AUTO_CONVERGE
    params = migration_params(rich)
    assert params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] == 64
    assert params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] == 64 * MIB


def test_termination_path_falls_back_to_the_node_runners_termination_log() -> None:
    env = {"VIRTMIGRATE_TERMINATION_LOG": "/pods/p1/termination-log"}
    assert parse_settings(REQUIRED, env).termination_message_path == "/pods/p1/termination-log"
    env["VIRTMIGRATE_TERMINATION_MESSAGE_PATH"] = "/explicit"
    assert parse_settings(REQUIRED, env).termination_message_path == "/explicit"
