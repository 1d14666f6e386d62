"""The history limit: the newest N finished Migrations of a VM stay, older ones are deleted with an Event
on the VM; active ones, ones still holding a finalizer and ones already being deleted are never touched."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_migration_sync import FakeWriter, World, migration, vm
from virtmigrate import errors
from virtmigrate.controller.config import ControllerConfig, parse_config
from virtmigrate.controller.events import RecordingEventRecorder
from virtmigrate.controller.migration.history import REASON_PRUNED, decide_prune, prune_history
from virtmigrate.errors import ConfigError

JSON = dict[str, Any]


def done(name: str, minute: int, *, phase: str = "Succeeded", finalizer: bool = False, deleting: bool = False,
         vm_name: str = "testvm") -> JSON:
    """A Migration that entered `phase` at 00:`minute`."""
    m = migration(name, vm_name, finalizer=finalizer, phase=phase)
    m["status"]["phaseTransitionTimestamps"] = [
        {"phase": "Pending", "time": "2026-01-01T00:00:00.000000Z"},
        {"phase": phase, "time": f"2026-01-01T00:{minute:02d}:00.000000Z"}]
    if deleting:
        m["metadata"]["deletionTimestamp"] = "2026-01-01T01:00:00Z"
    return m


def names(plan_delete: Any) -> list[str]:
    return [f.name for f in plan_delete]


@pytest.mark.parametrize(("objs", "keep", "deleted"), [
    pytest.param([done(f"m{i}", i) for i in range(7)], 5, ["m0", "m1"], id="keeps-newest-5"),
    pytest.param([done(f"m{i}", 9 - i) for i in range(7)], 5, ["m6", "m5"], id="newest-by-end-not-by-name"),
    pytest.param([done(f"m{i}", i) for i in range(3)], 5, [], id="under-the-limit"),
    pytest.param([done(f"m{i}", i) for i in range(3)], 0, ["m0", "m1", "m2"], id="keep-none"),
    pytest.param([done(f"m{i}", i) for i in range(30)], -1, [], id="keep-all"),
    pytest.param([done("failed", 1, phase="Failed"), done("ok", 2)], 1, ["failed"], id="failed-count-as-history"),
    pytest.param([done("old", 1, finalizer=True), done("new", 2)], 0, ["new"], id="never-one-with-its-finalizer"),
    pytest.param([done("old", 1, deleting=True), done("new", 2)], 0, ["new"], id="never-one-being-deleted"),
    pytest.param([migration("run", phase="Running"), migration("wait", phase="Pending"), done("new", 2)], 0,
                 ["new"], id="never-an-active-one"),
    pytest.param([migration("run", phase="Running"), done("a", 1), done("b", 2)], 1, ["a"],
                 id="active-ones-do-not-count"),
])
def test_decide_prune(objs: list[JSON], keep: int, deleted: list[str]) -> None:
    assert names(decide_prune(objs, keep).delete) == deleted


def history_world(*objs: JSON, limit: int = 5) -> World:
    w = World()
    w.sync.config = w.sync.observer.config = ControllerConfig(history_limit=limit)
    w.vms.add(vm())
    for o in objs:
        w.migrations.add(o)
    return w


def test_a_finished_sync_prunes_its_vm_and_says_so_on_the_vm() -> None:
    w = history_world(*(done(f"m{i}", i) for i in range(7)), migration("next", phase="Running"),
                      done("other", 1, vm_name="othervm"))
    w.run("default/m6")
    assert [a[:4] for a in w.writer.actions if a[0] == "delete"] == [
        ("delete", "migrations", "default", "m0"), ("delete", "migrations", "default", "m1")]
    assert w.recorder.events == [("VM/testvm", "Normal", REASON_PRUNED,
                                  "deleted 2 finished Migration(s) beyond the history limit of 5 per VM: m0, m1")]


def test_the_decision_is_the_cache_s_so_a_restarted_controller_prunes_the_same() -> None:
    objs = [done(f"m{i}", i) for i in range(7)]
    first, restarted = history_world(*objs), history_world(*objs)  # nothing but the cache carries over
    first.run("default/m3")
    restarted.run("default/m5")
    assert [a for a in first.writer.actions if a[0] == "delete"] == [
        a for a in restarted.writer.actions if a[0] == "delete"]


def test_an_active_migration_sync_prunes_nothing() -> None:
    w = history_world(*(done(f"m{i}", i) for i in range(7)), migration("next", phase="Running"), limit=0)
    w.run("default/next")
    assert not [a for a in w.writer.actions if a[0] == "delete" and a[1] == "migrations"]


def test_keep_all_never_deletes() -> None:
    w = history_world(*(done(f"m{i}", i) for i in range(40)), limit=-1)
    w.run("default/m39")
    assert not [a for a in w.writer.actions if a[0] == "delete"] and not w.recorder.events


class RacingWriter(FakeWriter):
    """Another replica pruned `gone` first; `reused` is now a newer Migration's name (uid precondition)."""

    def __init__(self, gone: str, reused: str) -> None:
        super().__init__()
        self.gone, self.reused = gone, reused
        self.uids: list[str | None] = []

    def delete(self, res: Any, name: str, namespace: str | None = None, *, grace_period_seconds: int | None = None,
               uid: str | None = None, propagation_policy: str | None = None) -> JSON:
        self.uids.append(uid)
        if name == self.gone:
            raise errors.NotFound(f"migrations {name} not found")
        if name == self.reused:
            raise errors.Conflict(f"migrations {name}: uid precondition failed")
        return super().delete(res, name, namespace, uid=uid)


def test_the_event_names_only_what_this_call_deleted() -> None:
    plan = decide_prune([done(f"m{i}", i) for i in range(4)], 1)
    writer, recorder = RacingWriter(gone="m0", reused="m1"), RecordingEventRecorder()
    got = prune_history(plan, namespace="default", vm=vm(), keep=1, client=writer, recorder=recorder)
    assert got == ["m2"]
    assert writer.uids == ["m0-uid", "m1-uid", "m2-uid"]
    assert [e[3] for e in recorder.events] == [
        "deleted 1 finished Migration(s) beyond the history limit of 1 per VM: m2"]


@pytest.mark.parametrize(("argv", "env", "limit"), [
    pytest.param([], {}, 5, id="default-five"),
    pytest.param(["--migration-history-limit=0"], {}, 0, id="flag-keep-none"),
    pytest.param([], {"VIRTMIGRATE_MIGRATION_HISTORY_LIMIT": "-1"}, -1, id="env-keep-all"),
])
def test_the_limit_is_configurable(argv: list[str], env: dict[str, str], limit: int) -> None:
    assert parse_config(argv, env).history_limit == limit


def test_a_limit_below_minus_one_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--migration-history-limit"):
        parse_config(["--migration-history-limit=-2"], {})


def test_a_stale_cache_does_not_delete_the_same_migrations_twice() -> None:
    w = history_world(*(done(f"m{i}", i) for i in range(7)))
    w.run("default/m6")
    w.writer.actions.clear()
    w.run("default/m5")  # the cache does not show the deletes yet
    assert not [a for a in w.writer.actions if a[0] == "delete"]
    w.migrations.delete(w.migrations.get_by_key("default/m0"))  # the watch catches up; m1 stays stale
    w.migrations.add(done("m7", 7))
    w.run("default/m7")
    assert [a[3] for a in w.writer.actions if a[0] == "delete"] == ["m2"]
