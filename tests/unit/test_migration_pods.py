"""Pod builders: the agent pod (policy defaults + Migration overrides -> flags) and the target pod."""

from __future__ import annotations

import pytest

from virtmigrate.api.migration import Migration, MigrationPolicy
from virtmigrate.api.vm import VM
from virtmigrate.controller.migration.pods import (
    Destination,
    PolicyDefaults,
    agent_pod_name,
    compute_destination,
    compute_policy,
    new_agent_pod,
    new_target_pod,
    target_pod_name,
)
from virtmigrate.scheduler import Merged, merge_constraints

VM_OBJ = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
          "metadata": {"name": "testvm", "namespace": "default", "uid": "vm-uid"},
          "spec": {"running": True, "memory": "256Mi", "nodeSelector": {"zone": "a"}},
          "status": {"phase": "Running", "node": "node0", "launcherPod": "virt-launcher-testvm-aaaaa"}}
MIG_OBJ = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
           "metadata": {"name": "testvm-migration", "namespace": "default", "uid": "mig-uid"},
           "spec": {"selector": {"name": "testvm"}, "bandwidthMiBps": 16, "allowPostCopy": True}}
VM_ = VM.parse(VM_OBJ)
MIG = Migration.parse(MIG_OBJ)


def test_policy_overrides_win_field_by_field() -> None:
    defaults = PolicyDefaults(bandwidth_mib_s=0, max_downtime_ms=300, allow_post_copy=False)
    eff = compute_policy(defaults, MigrationPolicy(bandwidth_mib_s=16, allow_post_copy=True))
    assert eff == PolicyDefaults(bandwidth_mib_s=16, max_downtime_ms=300, allow_post_copy=True)
    assert compute_policy(defaults, MigrationPolicy()) == defaults


@pytest.mark.parametrize(("node", "expected"), [
    pytest.param({"metadata": {"annotations": {"virtmigrate.kubevirt.io/libvirt-uri": "qemu+tcp://127.0.0.1:16602/system",
                                               "virtmigrate.kubevirt.io/migration-address": "127.0.0.12"}}},
                 Destination("qemu+tcp://127.0.0.1:16602/system", "tcp://127.0.0.12"), id="annotations"),
    pytest.param({"metadata": {}, "status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                                           {"type": "InternalIP", "address": "10.0.0.2"}]}},
                 Destination("qemu+tcp://10.0.0.2/system", "tcp://10.0.0.2"), id="template-internal-ip"),
    pytest.param({"metadata": {}}, Destination("", ""), id="nothing-known"),
])
def test_destination_from_node(node: dict[str, object], expected: Destination) -> None:
    assert compute_destination(node, uri_template="qemu+tcp://{ip}/system",
                               migration_uri_template="tcp://{ip}") == expected


def test_agent_pod() -> None:
    policy = compute_policy(PolicyDefaults(), MIG.spec.policy)
    pod = new_agent_pod(VM_, MIG, source_node="node0",
                        dest=Destination("qemu+tcp://127.0.0.1:16602/system", "tcp://127.0.0.12"), policy=policy,
                        service_account="virtmigrate-agent")
    spec = pod["spec"]
    assert pod["metadata"]["name"] == agent_pod_name(MIG) == agent_pod_name(MIG)  # deterministic
    assert pod["metadata"]["name"].startswith("virt-migration-testvm-migration-")
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "mig-uid"
    assert pod["metadata"]["labels"]["virtmigrate.kubevirt.io/role"] == "agent"
    assert (spec["nodeName"], spec["restartPolicy"], spec["serviceAccountName"]) == \
        ("node0", "Never", "virtmigrate-agent")
    c = spec["containers"][0]
    assert c["command"] == ["virtmigrate-agent"]
    assert c["args"] == ["--domain=default_testvm", "--destination-uri=qemu+tcp://127.0.0.1:16602/system",
                         "--bandwidth=16", "--completion-timeout-per-gib=150", "--progress-timeout=150",
                         "--max-downtime=500", "--allow-post-copy=true", "--allow-auto-converge=false",
                         "--allow-pause=false", "--migration-uri=tcp://127.0.0.12", "--migration=testvm-migration",
                         "--namespace=default"]  # created at TargetReady: it reads and writes its Migration, no wait


def test_an_agent_created_before_its_target_is_ready_waits_for_it() -> None:
    policy = compute_policy(PolicyDefaults(), MIG.spec.policy)
    dest = Destination("qemu+tcp://127.0.0.1:16602/system", "tcp://127.0.0.12")
    early = new_agent_pod(VM_, MIG, source_node="node0", dest=dest, policy=policy,
                          service_account="virtmigrate-agent", await_target=True)
    assert early["spec"]["containers"][0]["args"][-1] == "--await-target-uid=mig-uid"
    # without API access it could not read its Migration: such an agent is never created early
    blind = new_agent_pod(VM_, MIG, source_node="node0", dest=dest, policy=policy, await_target=True)
    assert not [a for a in blind["spec"]["containers"][0]["args"] if a.startswith(("--await", "--migration="))]


def test_agent_args_parse_with_the_agents_own_parser() -> None:
    from virtmigrate.agent.settings import parse_settings

    policy = compute_policy(PolicyDefaults(max_downtime_ms=250), MIG.spec.policy)
    pod = new_agent_pod(VM_, MIG, source_node="node0", dest=Destination("qemu+tcp://h/system", "tcp://a"),
                        policy=policy)
    s = parse_settings(pod["spec"]["containers"][0]["args"], {})
    assert (s.domain, s.destination_uri, s.migration_uri) == ("default_testvm", "qemu+tcp://h/system", "tcp://a")
    assert (s.policy.bandwidth_mibps, s.policy.max_downtime_ms, s.policy.allow_post_copy) == (16, 250, True)
    assert s.migration == ""  # no service account: no API access, the agent only logs


def test_target_pod_uses_merged_constraints_and_receive_mode() -> None:
    merged = merge_constraints(VM_.spec.node_selector, [], vm_tolerations=[], migration_node_selector={"disk": "ssd"},
                               source_node="node0")
    assert isinstance(merged, Merged)
    pod = new_target_pod(VM_, MIG, merged)
    assert pod["metadata"]["name"] == target_pod_name(MIG, VM_)
    assert pod["metadata"]["name"] != VM_OBJ["status"]["launcherPod"]  # type: ignore[index]
    assert pod["spec"]["nodeSelector"] == {"zone": "a", "disk": "ssd"}
    required = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    terms = required["nodeSelectorTerms"]
    assert {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node0"]} in terms[0]["matchExpressions"]
    assert "--mode=receive" in pod["spec"]["containers"][0]["args"]
    assert pod["metadata"]["labels"]["virtmigrate.kubevirt.io/migration"] == "testvm-migration"


def test_infeasibility_explanation_names_keys_and_stays_bounded() -> None:
    from virtmigrate.controller.config import ControllerConfig
    from virtmigrate.controller.migration.placement import explain, merge

    nodes = [{"metadata": {"name": f"n{i:02d}", "labels": {"kubernetes.io/hostname": f"n{i:02d}", "zone": "a"}},
              "status": {"allocatable": {"memory": "4Gi", "cpu": "2"}}} for i in range(30)]
    mig = Migration.parse({**MIG_OBJ, "spec": {"selector": {"name": "testvm"}, "nodeSelector": {"disk": "ssd"}}})
    vm = VM.parse({**VM_OBJ, "spec": {"running": True, "memory": "256Mi"}})
    merged = merge(vm, mig, source_node="n00", config=ControllerConfig())
    assert isinstance(merged, Merged)
    text = explain(nodes, [], merged, vm)
    assert text.startswith("0/30 nodes are available: 1 is the source, 29 didn't match node selector (disk)")
    assert "... and 20 more nodes" in text
