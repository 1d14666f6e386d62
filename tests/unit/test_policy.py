"""The cluster's policy on what a tenant may ask for: the pure checks (table-driven), the configuration
that sets them, and sync(key) failing a Migration that crosses them (PolicyViolation, InvalidSpec for a
VM's disallowed path, InvalidDestination for a Node's refused libvirt URI) — never creating its pods."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.unit.test_migration_sync import World, _running_world, migration, phases, vm
from virtmigrate.api.migration import MigrationPolicy
from virtmigrate.controller.config import ControllerConfig, parse_config
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration.execute import Listers, MigrationSync
from virtmigrate.controller.migration.pods import PolicyDefaults
from virtmigrate.controller.policy import (
    ImageDirs,
    PolicyLimits,
    check_libvirt_uri,
    check_migration_uri,
    compute_effective_policy,
    destination_problem,
    image_path_problem,
    policy_violations,
)
from virtmigrate.errors import ConfigError

LIMITS = PolicyLimits(min_bandwidth_mib_s=10, max_bandwidth_mib_s=100, max_completion_timeout_per_gib_s=300,
                      max_progress_timeout_s=600, max_downtime_ms=1000, permit_post_copy=False, permit_pause=False)


@pytest.mark.parametrize("policy, needles", [
    pytest.param(MigrationPolicy(), [], id="nothing-asked"),
    pytest.param(MigrationPolicy(bandwidth_mib_s=100, completion_timeout_per_gib_s=300, progress_timeout_s=600,
                                 max_downtime_ms=1000, allow_post_copy=False, allow_pause=False,
                                 allow_auto_converge=True), [], id="at-every-limit"),
    pytest.param(MigrationPolicy(bandwidth_mib_s=101), ["spec.bandwidthMiBps", "cap of 100"], id="bandwidth-cap"),
    pytest.param(MigrationPolicy(bandwidth_mib_s=0), ["spec.bandwidthMiBps", "0 (unlimited)"], id="unlimited"),
    pytest.param(MigrationPolicy(bandwidth_mib_s=9), ["spec.bandwidthMiBps", "floor of 10"], id="bandwidth-floor"),
    pytest.param(MigrationPolicy(completion_timeout_per_gib_s=301), ["spec.completionTimeoutPerGiB", "300"],
                 id="completion-timeout"),
    pytest.param(MigrationPolicy(progress_timeout_s=601), ["spec.progressTimeout", "600"], id="progress-timeout"),
    pytest.param(MigrationPolicy(max_downtime_ms=1001), ["spec.maxDowntimeMs", "1000"], id="downtime"),
    pytest.param(MigrationPolicy(allow_post_copy=True), ["spec.allowPostCopy", "--permit-post-copy"], id="post-copy"),
    pytest.param(MigrationPolicy(allow_pause=True), ["spec.allowPause", "--permit-pause"], id="pause"),
])
def test_policy_violations_name_field_and_limit(policy: MigrationPolicy, needles: list[str]) -> None:
    text = "; ".join(policy_violations(policy, LIMITS))
    assert bool(text) == bool(needles)
    for n in needles:
        assert n in text


def test_no_limits_permit_everything_and_the_effective_policy_takes_the_overrides() -> None:
    eff = compute_effective_policy(PolicyDefaults(), PolicyLimits(),
                                   MigrationPolicy(bandwidth_mib_s=0, allow_post_copy=True, max_downtime_ms=10**6))
    assert eff.violations == ()
    assert eff.policy.allow_post_copy and eff.policy.max_downtime_ms == 10**6


def test_every_violation_is_reported_at_once() -> None:
    eff = compute_effective_policy(PolicyDefaults(), LIMITS, MigrationPolicy(bandwidth_mib_s=500, allow_pause=True))
    assert len(eff.violations) == 2


DIRS = ImageDirs(cluster=("/var/lib/virtmigrate/images",), by_namespace={"lab": ("/srv/lab",), "none": ()})


@pytest.mark.parametrize("namespace, kernel, disk, needles", [
    pytest.param("ns", "/var/lib/virtmigrate/images/k.elf", "", [], id="kernel-allowed"),
    pytest.param("ns", "", "/var/lib/virtmigrate/images/sub/d.img", [], id="disk-in-subdir"),
    pytest.param("ns", "/etc/shadow", "", ["spec.kernel", "/var/lib/virtmigrate/images"], id="kernel-elsewhere"),
    pytest.param("ns", "", "/var/lib/virtmigrate/images-evil/d", ["spec.disk"], id="sibling-prefix"),
    pytest.param("ns", "/var/lib/virtmigrate/images/../../../etc/passwd", "", ["spec.kernel", "'..'"],
                 id="dotdot"),
    pytest.param("ns", "/var/lib/virtmigrate/images", "", ["spec.kernel"], id="the-directory-itself"),
    pytest.param("lab", "/srv/lab/k", "", [], id="namespace-own-dir"),
    pytest.param("lab", "/var/lib/virtmigrate/images/k", "", ["spec.kernel", "/srv/lab"], id="namespace-replaces"),
    pytest.param("none", "/var/lib/virtmigrate/images/k", "", ["no directory"], id="namespace-with-none"),
    pytest.param("ns", "/etc/a", "/etc/b", ["spec.kernel", "spec.disk"], id="both-named"),
])
def test_image_paths(namespace: str, kernel: str, disk: str, needles: list[str]) -> None:
    text = image_path_problem(namespace, kernel, disk, DIRS)
    assert bool(text) == bool(needles), text
    for n in needles:
        assert n in text


def test_unrestricted_image_dirs_allow_any_path() -> None:
    assert image_path_problem("ns", "/anything", "/at/all", ImageDirs()) == ""


@pytest.mark.parametrize("uri, ok", [
    pytest.param("qemu+tcp://10.0.0.1/system", True, id="tcp"),
    pytest.param("qemu+tls://node1.example:16514/system", True, id="tls-port"),
    pytest.param("qemu:///system", True, id="local"),
    pytest.param("qemu+ssh://root@node1/system", False, id="ssh"),
    pytest.param("qemu+ext:///system?command=/bin/sh", False, id="ext-command"),
    pytest.param("qemu+tls://node1/system?no_verify=1", False, id="no-verify"),
    pytest.param("qemu+tcp://node1/system?", False, id="empty-query"),
    pytest.param("qemu+unix:///system?socket=/tmp/x", False, id="unix-socket"),
    pytest.param("xen+tcp://node1/system", False, id="other-driver"),
    pytest.param("qemu+tcp:///system", False, id="no-host"),
    pytest.param("qemu+tcp://node1/", False, id="no-system"),
])
def test_libvirt_uris(uri: str, ok: bool) -> None:
    assert (check_libvirt_uri(uri) == "") is ok


@pytest.mark.parametrize("uri, ok", [
    pytest.param("tcp://127.0.0.21", True, id="host"),
    pytest.param("tcp://10.0.0.1:49152", True, id="port"),
    pytest.param("rdma://10.0.0.1", False, id="rdma"),
    pytest.param("tcp://10.0.0.1/x", False, id="path"),
    pytest.param("tcp://10.0.0.1?x=1", False, id="query"),
    pytest.param("tcp://10.0.0.1:port", False, id="bad-port"),
])
def test_migration_uris(uri: str, ok: bool) -> None:
    assert (check_migration_uri(uri) == "") is ok


def test_a_refused_annotation_is_named_with_its_node() -> None:
    node = {"metadata": {"name": "node7", "annotations": {
        "virtmigrate.kubevirt.io/libvirt-uri": "qemu+tls://n7/system?no_verify=1",
        "virtmigrate.kubevirt.io/migration-address": "10.0.0.7"}}}
    text = destination_problem(node)
    assert "node node7" in text and "virtmigrate.kubevirt.io/libvirt-uri" in text and "query" in text
    assert "migration-address" not in text  # a bare address means tcp://address: fine
    assert destination_problem({"metadata": {"name": "plain"}}) == ""


# --- configuration ---------------------------------------------------------------------------------------

def test_limits_and_image_dirs_from_flags_and_environment() -> None:
    c = parse_config(["--limit-bandwidth-max=100", "--permit-post-copy=false",
                      "--image-dirs-by-namespace=lab=/srv/lab:/srv/more;none="],
                     {"VIRTMIGRATE_LIMIT_MAX_DOWNTIME_MS": "900", "VIRTMIGRATE_IMAGE_DIRS": "/a,/b",
                      "VIRTMIGRATE_BANDWIDTH_MIBPS": "50"})
    assert c.policy_limits.max_bandwidth_mib_s == 100 and c.policy_limits.max_downtime_ms == 900
    assert not c.policy_limits.permit_post_copy and c.policy_limits.permit_pause
    assert c.image_dirs == ImageDirs(cluster=("/a", "/b"), by_namespace={"lab": ("/srv/lab", "/srv/more"),
                                                                         "none": ()})


def test_the_default_image_directory_and_the_wildcard() -> None:
    assert parse_config([], {}).image_dirs.cluster == ("/var/lib/virtmigrate/images",)
    assert parse_config(["--image-dirs=*"], {}).image_dirs.cluster is None


@pytest.mark.parametrize("argv, needle", [
    pytest.param(["--limit-bandwidth-max=50"], "--bandwidth", id="default-unlimited-beyond-cap"),
    pytest.param(["--allow-post-copy", "--permit-post-copy=false"], "allowPostCopy", id="default-post-copy"),
    pytest.param(["--limit-bandwidth-min=20", "--limit-bandwidth-max=10", "--bandwidth=15"], "--limit-bandwidth-min",
                 id="floor-above-cap"),
    pytest.param(["--image-dirs=relative/dir"], "--image-dirs", id="relative-dir"),
    pytest.param(["--destination-uri-template=qemu+ssh://{ip}/system"], "--destination-uri-template",
                 id="ssh-template"),
    pytest.param(["--migration-uri-template=tcp://{ip}?x=1"], "--migration-uri-template", id="query-template"),
])
def test_inconsistent_policy_configuration_is_refused(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_config(argv, {})


# --- sync(key) ----------------------------------------------------------------------------------------

def _world(config: ControllerConfig, w: World | None = None) -> World:
    w = w or World()
    w.sync = MigrationSync(Listers(w.migrations, w.vms, w.pods, w.nodes), w.writer, config=config, clock=w.clock,
                           recorder=w.recorder, metrics=MigrationMetrics(CollectorRegistry()))
    return w


def _failed(w: World) -> dict[str, Any]:
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    status: dict[str, Any] = body["status"]
    assert status["phase"] == "Failed"
    return status


def test_a_migration_beyond_the_limits_fails_with_policy_violation() -> None:
    w = _world(ControllerConfig(policy_limits=LIMITS))
    w.vms.add(vm())
    m = migration(phase="Pending", phaseTransitionTimestamps=phases("Pending"))
    m["spec"].update(bandwidthMiBps=500, allowPostCopy=True)
    w.migrations.add(m)
    st = _failed(w)
    assert st["reason"] == "PolicyViolation"
    assert "spec.bandwidthMiBps" in st["message"] and "100" in st["message"] and "spec.allowPostCopy" in st["message"]
    assert w.recorder.events[-1][1:3] == ("Warning", "PolicyViolation")


def test_a_migration_within_the_limits_is_admitted() -> None:
    w = _world(ControllerConfig(policy_limits=LIMITS))
    w.vms.add(vm())
    m = migration(phase="Pending", phaseTransitionTimestamps=phases("Pending"))
    m["spec"].update(bandwidthMiBps=100)
    w.migrations.add(m)
    [(_, _, _, _, body)] = w.run()
    assert body["status"]["phase"] == "Scheduling"


def test_a_migration_of_a_vm_with_a_disallowed_path_fails_naming_it() -> None:
    w = _world(ControllerConfig(image_dirs=ImageDirs(cluster=("/var/lib/virtmigrate/images",))))
    v = vm()
    v["spec"]["kernel"] = "/etc/passwd"
    w.vms.add(v)
    w.migrations.add(migration(phase="Pending", phaseTransitionTimestamps=phases("Pending")))
    st = _failed(w)
    assert st["reason"] == "InvalidSpec"
    assert "spec.kernel" in st["message"] and "/var/lib/virtmigrate/images" in st["message"]


def test_a_target_node_with_a_refused_uri_fails_before_any_agent_pod() -> None:
    w = _world(ControllerConfig(), _running_world(None, phase="TargetReady"))
    n1 = w.nodes.get_by_key("node1")
    assert n1 is not None
    n1["metadata"]["annotations"]["virtmigrate.kubevirt.io/libvirt-uri"] = "qemu+ext:///system?command=/bin/sh"
    st = _failed(w)
    assert st["reason"] == "InvalidDestination"
    assert "node node1" in st["message"] and "libvirt-uri" in st["message"]
