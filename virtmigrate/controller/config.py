"""The controller's configuration: flags, each also readable from a VIRTMIGRATE_* environment variable.

Fed by: cmd/controller.py (argv and os.environ; a flag wins over its variable).
Consumed by: the migration controller (capacity, policy defaults, timeouts, agent pod settings),
the VM controller, leader election, the metrics server and logging setup.
Invalid input raises ConfigError naming the flag, its variable and the fix.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from virtmigrate.controller.migration.capacity import Limits
from virtmigrate.controller.migration.decide import Timeouts
from virtmigrate.controller.migration.pods import PolicyDefaults
from virtmigrate.controller.policy import (
    ImageDirs,
    PolicyLimits,
    check_libvirt_uri,
    check_migration_uri,
    defaults_violations,
)
from virtmigrate.controller.vm.pods import LIBVIRT_SOCKET_DIR, NodeAccess
from virtmigrate.errors import ConfigError

ENV_PREFIX = "VIRTMIGRATE_"


@dataclass(frozen=True)
class ControllerConfig:
    namespaces: tuple[str, ...] = ()            # empty: every namespace
    workers: int = 4                            # concurrent syncs per controller
    limits: Limits = field(default_factory=Limits)
    policy: PolicyDefaults = field(default_factory=PolicyDefaults)
    policy_limits: PolicyLimits = field(default_factory=PolicyLimits)  # what a Migration may ask for
    image_dirs: ImageDirs = field(default_factory=ImageDirs)  # where VM kernels and disks may come from
    timeouts: Timeouts = field(default_factory=Timeouts)
    default_node_selector: dict[str, str] = field(default_factory=dict)  # fills keys nobody mentions
    destination_uri_template: str = "qemu+tcp://{ip}/system"  # when a Node has no libvirt-uri annotation
    migration_uri_template: str = "tcp://{ip}"                # when a Node has no migration-address annotation
    agent_service_account: str = "virtmigrate-agent"  # made per namespace (identities.py); "" = no API access
    agent_early_start: bool = True  # create the agent once the target pod is bound (agent/gate.py); see README
    metrics_address: str = "127.0.0.1:8080"     # host:port of /metrics, /healthz, /readyz; "" disables
    metrics_fd: int = 0                         # an inherited listening socket to serve them on instead; 0 = none
    log_format: str = "json"                    # json or console
    log_level: str = "info"
    kubeconfig: str = ""                        # "" = $KUBECONFIG, in-cluster, or ~/.kube/config
    leader_elect: bool = True
    lease_namespace: str = "virtmigrate"
    lease_name: str = "virtmigrate-controller"
    identity: str = field(default_factory=socket.gethostname)
    run_vm_controller: bool = True              # also run the VM controller in this process
    agent_image: str = "virtmigrate/agent:0.1.0"  # the image of every pod it creates (agent and launcher)
    libvirt_socket_dir: str = LIBVIRT_SOCKET_DIR  # node folder of libvirt-sock, hostPath in the pods; "" = none
    libvirt_socket_group: int = 0               # the socket's gid, a supplementary group of the pods; 0 = none
    drain_taint_key: str = "virtmigrate.kubevirt.io/drain"  # a node with a taint of this key is drained; "" = off
    history_limit: int = 5                      # finished Migrations kept per VM; -1 = all (history.py)

    @property
    def node_access(self) -> NodeAccess:
        """What the launcher and agent pods need from their node (vm/pods.py)."""
        return NodeAccess(image=self.agent_image, libvirt_socket_dir=self.libvirt_socket_dir,
                          libvirt_socket_group=self.libvirt_socket_group)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"virtmigrate-controller: {message}")


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _selector(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k:
            raise ValueError(text)
        out[k.strip()] = v.strip()
    return out


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


DEFAULT_IMAGE_DIRS = "/var/lib/virtmigrate/images"
ANY_DIR = "*"  # --image-dirs=* lifts the restriction (only for clusters whose tenants are all trusted)


def _dirs(text: str) -> tuple[str, ...] | None:
    """`/a,/b` -> ("/a", "/b"); `*` -> None (unrestricted); "" -> () (no directory allowed)."""
    if text.strip() == ANY_DIR:
        return None
    dirs = _csv(text)
    if any(not d.startswith("/") or ".." in d.split("/") for d in dirs):
        raise ValueError(text)
    return dirs


def _dirs_by_namespace(text: str) -> dict[str, tuple[str, ...]]:
    """`ns1=/a:/b;ns2=/c` -> {"ns1": ("/a", "/b"), "ns2": ("/c",)}."""
    out: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        ns, sep, dirs = part.partition("=")
        parsed = _dirs(dirs.replace(":", ","))
        if not sep or not ns.strip() or parsed is None:
            raise ValueError(text)
        out[ns.strip()] = parsed
    return out


_D = ControllerConfig()
_P = PolicyDefaults()
_PL = PolicyLimits()
_L = Limits()
_T = Timeouts()

# (flag, env suffix, type, default, help)
_FLAGS: tuple[tuple[str, str, Callable[[str], Any], Any, str], ...] = (
    ("--namespaces", "NAMESPACES", _csv, (), "comma-separated namespaces to watch; empty = all"),
    ("--workers", "WORKERS", int, _D.workers, "concurrent syncs per controller"),
    ("--max-parallel-migrations", "MAX_PARALLEL_MIGRATIONS", int, _L.max_running,
     "migrations running at once in the cluster"),
    ("--max-outbound-per-node", "MAX_OUTBOUND_PER_NODE", int, _L.max_per_node,
     "migrations leaving one node at once"),
    ("--bandwidth", "BANDWIDTH_MIBPS", int, _P.bandwidth_mib_s, "default bandwidth cap, MiB/s; 0 = unlimited"),
    ("--completion-timeout-per-gib", "COMPLETION_TIMEOUT_PER_GIB", int, _P.completion_timeout_per_gib_s,
     "default seconds per GiB of guest memory"),
    ("--progress-timeout", "PROGRESS_TIMEOUT", int, _P.progress_timeout_s, "default seconds without progress"),
    ("--max-downtime", "MAX_DOWNTIME_MS", int, _P.max_downtime_ms, "default highest switch-over pause, ms"),
    ("--allow-post-copy", "ALLOW_POST_COPY", _bool, _P.allow_post_copy, "allow post-copy by default"),
    ("--allow-auto-converge", "ALLOW_AUTO_CONVERGE", _bool, _P.allow_auto_converge,
     "allow auto-converge by default"),
    ("--allow-pause", "ALLOW_PAUSE", _bool, _P.allow_pause, "allow pausing the guest by default"),
    ("--limit-bandwidth-min", "LIMIT_BANDWIDTH_MIN_MIBPS", int, _PL.min_bandwidth_mib_s,
     "lowest bandwidth cap a Migration may ask for, MiB/s; 0 = no floor"),
    ("--limit-bandwidth-max", "LIMIT_BANDWIDTH_MAX_MIBPS", int, _PL.max_bandwidth_mib_s,
     "highest bandwidth a Migration may ask for, MiB/s (then unlimited is refused); 0 = no cap"),
    ("--limit-completion-timeout-per-gib", "LIMIT_COMPLETION_TIMEOUT_PER_GIB", int,
     _PL.max_completion_timeout_per_gib_s, "highest completionTimeoutPerGiB a Migration may ask for; 0 = none"),
    ("--limit-progress-timeout", "LIMIT_PROGRESS_TIMEOUT", int, _PL.max_progress_timeout_s,
     "highest progressTimeout a Migration may ask for, s; 0 = none"),
    ("--limit-max-downtime", "LIMIT_MAX_DOWNTIME_MS", int, _PL.max_downtime_ms,
     "highest maxDowntimeMs a Migration may ask for; 0 = none"),
    ("--permit-post-copy", "PERMIT_POST_COPY", _bool, _PL.permit_post_copy,
     "may a Migration set allowPostCopy: true"),
    ("--permit-pause", "PERMIT_PAUSE", _bool, _PL.permit_pause, "may a Migration set allowPause: true"),
    ("--image-dirs", "IMAGE_DIRS", _dirs, _dirs(DEFAULT_IMAGE_DIRS),
     "comma-separated node directories VM kernels and disks may lie under; * = anywhere (unsafe)"),
    ("--image-dirs-by-namespace", "IMAGE_DIRS_BY_NAMESPACE", _dirs_by_namespace, {},
     "ns=/dir:/dir;... : a listed namespace uses these directories instead of --image-dirs"),
    ("--unschedulable-timeout", "UNSCHEDULABLE_TIMEOUT", float, _T.unschedulable_s,
     "seconds a target may stay unschedulable before the Migration fails"),
    ("--pending-timeout", "PENDING_TIMEOUT", float, _T.pending_s,
     "seconds any other target/agent wait may last before the Migration fails"),
    ("--running-timeout", "RUNNING_TIMEOUT", float, _T.running_s,
     "seconds a migration may run before its agent is stopped (AgentStuck)"),
    ("--agent-grace", "AGENT_GRACE", float, _T.agent_grace_s,
     "seconds an agent asked to stop may take before its pod is force-deleted"),
    ("--settle-time", "SETTLE_TIME", float, _T.settle_s,
     "seconds the launchers' reports get to catch up after an agent ended without proof of the outcome"),
    ("--orphan-job-timeout", "ORPHAN_JOB_TIMEOUT", float, _T.orphan_job_s,
     "seconds a migration job may outlive its agent before it is aborted"),
    ("--resolve-timeout", "RESOLVE_TIMEOUT", float, _T.resolve_s,
     "seconds the reports may stay unsettled before the Migration fails as GuestLocationUnknown"),
    ("--default-node-selector", "DEFAULT_NODE_SELECTOR", _selector, {},
     "k=v,... applied to targets for keys neither VM nor Migration mention"),
    ("--destination-uri-template", "DESTINATION_URI_TEMPLATE", str, _D.destination_uri_template,
     "libvirt URI of a target node without annotation; {ip} = its InternalIP"),
    ("--migration-uri-template", "MIGRATION_URI_TEMPLATE", str, _D.migration_uri_template,
     "migration data URI of a target node without annotation; {ip} = its InternalIP"),
    ("--agent-service-account", "AGENT_SERVICE_ACCOUNT", str, _D.agent_service_account,
     "service account of agent pods (lets the agent report progress; the controller makes "
     "virtmigrate-agent in each namespace, any other name is yours to make); empty = none"),
    ("--agent-early-start", "AGENT_EARLY_START", _bool, _D.agent_early_start,
     "create the agent pod once the target pod is bound (it waits for TargetReady itself; needs an agent "
     "service account); false = at TargetReady"),
    ("--metrics-address", "METRICS_ADDRESS", str, _D.metrics_address, "host:port for /metrics, /healthz, /readyz"),
    ("--metrics-fd", "METRICS_FD", int, _D.metrics_fd,
     "serve /metrics, /healthz, /readyz on this inherited listening socket instead of binding --metrics-address "
     "(socket activation; the local cluster binds it in a network namespace of its own); 0 = none"),
    ("--log-format", "LOG_FORMAT", str, _D.log_format, "json or console"),
    ("--log-level", "LOG_LEVEL", str, _D.log_level, "debug, info, warning or error"),
    ("--kubeconfig", "KUBECONFIG", str, "", "kubeconfig; default $KUBECONFIG, in-cluster, ~/.kube/config"),
    ("--leader-elect", "LEADER_ELECT", _bool, True, "run only while holding the Lease"),
    ("--lease-namespace", "LEASE_NAMESPACE", str, "", "namespace of the leader Lease; default $POD_NAMESPACE, "
     "else virtmigrate"),
    ("--lease-name", "LEASE_NAME", str, _D.lease_name, "name of the leader Lease"),
    ("--identity", "IDENTITY", str, "", "this replica's identity in the Lease; default $POD_NAME, else the host name"),
    ("--image", "IMAGE", str, _D.agent_image,
     "image of the agent and launcher pods (they set their command; the local node runner never pulls it)"),
    ("--libvirt-socket-dir", "LIBVIRT_SOCKET_DIR", str, _D.libvirt_socket_dir,
     "node folder of libvirt's socket, mounted (hostPath) at the same path in agent and launcher pods; "
     "empty = no mount (qemu+tls)"),
    ("--libvirt-socket-group", "LIBVIRT_SOCKET_GROUP", int, _D.libvirt_socket_group,
     "group id of the libvirt socket, given to agent and launcher pods as a supplementary group; 0 = none"),
    ("--vm-controller", "VM_CONTROLLER", _bool, True, "also run the VM controller"),
    ("--drain-taint-key", "DRAIN_TAINT_KEY", str, _D.drain_taint_key,
     "a node tainted with this key is evacuated like a cordoned one; empty = cordon only"),
    ("--migration-history-limit", "MIGRATION_HISTORY_LIMIT", int, _D.history_limit,
     "finished Migrations kept per VM (older ones are deleted, with an Event on the VM); 0 = none, -1 = all"),
)


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> ControllerConfig:
    """Configuration from flags, falling back to VIRTMIGRATE_* variables, then defaults."""
    p = _Parser(prog="virtmigrate-controller", description="Run the migration and VM controllers.")
    for flag, suffix, typ, default, text in _FLAGS:
        kw: dict[str, Any] = {"default": None, "help": f"{text} [${ENV_PREFIX}{suffix}, default {default!r}]"}
        if typ is _bool:
            kw.update(nargs="?", const="true")
        p.add_argument(flag, **kw)
    ns = vars(p.parse_args(list(argv)))
    v: dict[str, Any] = {}
    for flag, suffix, typ, default, _ in _FLAGS:
        key = flag[2:].replace("-", "_")
        var = ENV_PREFIX + suffix
        raw = ns[key] if ns[key] is not None else env.get(var)
        if raw is None:
            v[key] = default
            continue
        try:
            v[key] = typ(raw)
        except ValueError:
            raise ConfigError(f"{flag} (or ${var}) = {raw!r} is not valid; fix the value") from None
    return _validate(v, env)


def _validate(v: dict[str, Any], env: Mapping[str, str]) -> ControllerConfig:
    def need(cond: bool, flag: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{flag}: {msg}")

    for flag in ("workers", "max_parallel_migrations", "max_outbound_per_node", "completion_timeout_per_gib",
                 "progress_timeout", "max_downtime"):
        need(v[flag] >= 1, "--" + flag.replace("_", "-"), "must be at least 1")
    need(v["migration_history_limit"] >= -1, "--migration-history-limit",
         "must be -1 (keep all), 0 (keep none) or a positive count")
    need(v["bandwidth"] >= 0, "--bandwidth", "must be >= 0 (0 = unlimited)")
    need(v["metrics_fd"] == 0 or v["metrics_fd"] > 2, "--metrics-fd",
         "must be an inherited socket's descriptor (3 or above), or 0 for none")
    need(v["libvirt_socket_group"] >= 0, "--libvirt-socket-group", "must be a group id >= 0 (0 = none)")
    need(not v["libvirt_socket_dir"] or v["libvirt_socket_dir"].startswith("/"), "--libvirt-socket-dir",
         "must be an absolute path, or empty for no mount")
    for flag in ("unschedulable_timeout", "pending_timeout", "running_timeout", "agent_grace", "settle_time",
                 "orphan_job_timeout", "resolve_timeout"):
        need(v[flag] > 0, "--" + flag.replace("_", "-"), "must be > 0 seconds")
    need(v["log_format"] in ("json", "console"), "--log-format", "must be json or console")
    need(v["log_level"] in ("debug", "info", "warning", "error"), "--log-level",
         "must be debug, info, warning or error")
    need("{ip}" in v["destination_uri_template"], "--destination-uri-template", "must contain {ip}")
    uri_problem = check_libvirt_uri(v["destination_uri_template"].replace("{ip}", "192.0.2.1"))
    need(not uri_problem, "--destination-uri-template", uri_problem)
    mig_problem = check_migration_uri(v["migration_uri_template"].replace("{ip}", "192.0.2.1"))
    need(not mig_problem, "--migration-uri-template", mig_problem)
    for flag in ("limit_bandwidth_min", "limit_bandwidth_max", "limit_completion_timeout_per_gib",
                 "limit_progress_timeout", "limit_max_downtime"):
        need(v[flag] >= 0, "--" + flag.replace("_", "-"), "must be >= 0 (0 = no limit)")
    need(not v["limit_bandwidth_max"] or v["limit_bandwidth_min"] <= v["limit_bandwidth_max"],
         "--limit-bandwidth-min", "must not exceed --limit-bandwidth-max")
    policy = PolicyDefaults(bandwidth_mib_s=v["bandwidth"],
                            completion_timeout_per_gib_s=v["completion_timeout_per_gib"],
                            progress_timeout_s=v["progress_timeout"], max_downtime_ms=v["max_downtime"],
                            allow_post_copy=v["allow_post_copy"], allow_auto_converge=v["allow_auto_converge"],
                            allow_pause=v["allow_pause"])
    limits = PolicyLimits(min_bandwidth_mib_s=v["limit_bandwidth_min"], max_bandwidth_mib_s=v["limit_bandwidth_max"],
                          max_completion_timeout_per_gib_s=v["limit_completion_timeout_per_gib"],
                          max_progress_timeout_s=v["limit_progress_timeout"],
                          max_downtime_ms=v["limit_max_downtime"], permit_post_copy=v["permit_post_copy"],
                          permit_pause=v["permit_pause"])
    beyond = defaults_violations(policy, limits)
    need(not beyond, "policy defaults (--bandwidth, --allow-post-copy, ...)",
         "cross the cluster's own --limit-*/--permit-* settings: " + "; ".join(beyond).replace("spec.", "default "))
    return ControllerConfig(
        namespaces=v["namespaces"], workers=v["workers"],
        limits=Limits(max_running=v["max_parallel_migrations"], max_per_node=v["max_outbound_per_node"]),
        policy=policy, policy_limits=limits,
        image_dirs=ImageDirs(cluster=v["image_dirs"], by_namespace=v["image_dirs_by_namespace"]),
        timeouts=Timeouts(unschedulable_s=v["unschedulable_timeout"], pending_s=v["pending_timeout"],
                          running_s=v["running_timeout"], agent_grace_s=v["agent_grace"], settle_s=v["settle_time"],
                          orphan_job_s=v["orphan_job_timeout"], resolve_s=v["resolve_timeout"]),
        default_node_selector=v["default_node_selector"],
        destination_uri_template=v["destination_uri_template"], migration_uri_template=v["migration_uri_template"],
        agent_service_account=v["agent_service_account"], metrics_address=v["metrics_address"],
        metrics_fd=v["metrics_fd"],
        agent_early_start=v["agent_early_start"],
        log_format=v["log_format"], log_level=v["log_level"], kubeconfig=v["kubeconfig"],
        leader_elect=v["leader_elect"],
        lease_namespace=v["lease_namespace"] or env.get("POD_NAMESPACE") or _D.lease_namespace,
        lease_name=v["lease_name"], identity=v["identity"] or env.get("POD_NAME") or socket.gethostname(),
        run_vm_controller=v["vm_controller"], agent_image=v["image"], drain_taint_key=v["drain_taint_key"],
        libvirt_socket_dir=v["libvirt_socket_dir"], libvirt_socket_group=v["libvirt_socket_group"],
        history_limit=v["migration_history_limit"],
    )
