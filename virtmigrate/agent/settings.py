"""The agent's inputs: command-line flags, each also readable from an environment variable.

Fed by cmd/agent.py (argv and os.environ; a flag wins over its variable); consumed by migrate.py
(connections, domain, termination path, API access) and, as `Policy`, by the pure decisions.
Invalid input raises ConfigError naming the flag, its variable and the fix.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from virtmigrate.errors import ConfigError

ENV_PREFIX = "VIRTMIGRATE_"


@dataclass(frozen=True)
class Policy:
    """How the migration is steered; every decision function reads only this and observations."""

    bandwidth_mibps: int = 0                    # 0 = unlimited
    completion_timeout_per_gib_s: float = 150.0  # per GiB of guest memory, rounded up
    progress_timeout_s: float = 150.0            # without a new low of remaining data
    max_downtime_ms: int = 500                   # the highest pause allowed at switch-over
    downtime_steps: int = 10                     # the allowed pause rises to the maximum in this many steps
    downtime_step_delay_per_gib_s: float = 30.0  # seconds between steps, per GiB of guest memory
    allow_auto_converge: bool = False            # QEMU throttles the vCPU; the agent may raise the throttle
    allow_post_copy: bool = False                # switch to post-copy when pre-copy cannot finish in time
    allow_pause: bool = False                    # last resort: pause the guest so the copy finishes
    poll_interval_s: float = 0.5


@dataclass(frozen=True)
class Settings:
    domain: str                       # name or UUID on the source
    destination_uri: str              # libvirt URI of the destination, as the source daemon reaches it
    source_uri: str = "qemu:///system"
    migration_uri: str = ""           # migration data URI (tcp://addr[:port]); "" lets libvirt choose
    policy: Policy = Policy()
    termination_message_path: str = "/dev/termination-log"
    migration: str = ""               # the Migration object, for status.progress (optional)
    namespace: str = ""
    kubeconfig: str = ""              # "" = in-cluster config when `migration` is set
    log_level: str = "info"
    await_target_uid: str = ""        # start the job only once that Migration's target is ready (agent/gate.py)
    await_target_timeout_s: float = 1800.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"virtmigrate-agent: {message}")


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


# (flag, env suffix, type, default, help)
_FLAGS: tuple[tuple[str, str, type | object, object, str], ...] = (
    ("--domain", "DOMAIN", str, "", "domain name or UUID on the source (required)"),
    ("--source-uri", "SOURCE_URI", str, "qemu:///system", "source libvirt URI (the node-local daemon)"),
    ("--destination-uri", "DESTINATION_URI", str, "", "destination libvirt URI (required)"),
    ("--migration-uri", "MIGRATION_URI", str, "", "migration data URI, e.g. tcp://10.0.0.2"),
    ("--bandwidth", "BANDWIDTH_MIBPS", int, 0, "bandwidth cap in MiB/s; 0 = unlimited"),
    ("--completion-timeout-per-gib", "COMPLETION_TIMEOUT_PER_GIB", float, 150.0,
     "seconds allowed per GiB of guest memory (rounded up) before the completion-timeout action"),
    ("--progress-timeout", "PROGRESS_TIMEOUT", float, 150.0,
     "seconds without a new low of remaining data before aborting"),
    ("--max-downtime", "MAX_DOWNTIME_MS", int, 500, "highest allowed switch-over pause, milliseconds"),
    ("--downtime-steps", "DOWNTIME_STEPS", int, 10, "steps in which the allowed pause rises to the maximum"),
    ("--downtime-step-delay", "DOWNTIME_STEP_DELAY", float, 30.0, "seconds between steps, per GiB of memory"),
    ("--allow-auto-converge", "ALLOW_AUTO_CONVERGE", _bool, False, "let QEMU throttle the guest's vCPU"),
    ("--allow-post-copy", "ALLOW_POST_COPY", _bool, False, "allow switching to post-copy"),
    ("--allow-pause", "ALLOW_PAUSE", _bool, False, "allow pausing the guest as a last resort"),
    ("--poll-interval", "POLL_INTERVAL", float, 0.5, "seconds between job-statistics polls"),
    ("--termination-message-path", "TERMINATION_MESSAGE_PATH", str, "/dev/termination-log",
     "where the JSON result is written"),
    ("--migration", "MIGRATION", str, "", "name of the Migration whose status.progress to patch"),
    ("--namespace", "NAMESPACE", str, "", "namespace of that Migration"),
    ("--kubeconfig", "KUBECONFIG", str, "", "kubeconfig for API access (default: in-cluster)"),
    ("--log-level", "LOG_LEVEL", str, "info", "debug, info, warning or error"),
    ("--await-target-uid", "AWAIT_TARGET_UID", str, "",
     "the uid of --migration: start the job only once it says its target is ready (TargetReady or Running)"),
    ("--await-target-timeout", "AWAIT_TARGET_TIMEOUT", float, 1800.0,
     "seconds to wait for that before exiting with the guest untouched"),
)


# Variables read when a flag's own variable is unset: the local node runner hands every container its
# termination-log file as $VIRTMIGRATE_TERMINATION_LOG (a kubelet would mount it at the pod's path).
_ENV_FALLBACKS = {"termination_message_path": "VIRTMIGRATE_TERMINATION_LOG"}


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Settings from flags, falling back to VIRTMIGRATE_* variables, then defaults."""
    p = _Parser(prog="virtmigrate-agent", description="Live-migrate one libvirt domain peer to peer.")
    for flag, suffix, typ, default, text in _FLAGS:
        var = ENV_PREFIX + suffix
        kw: dict[str, object] = {"default": None, "help": f"{text} [${var}, default {default!r}]"}
        if typ is _bool:
            kw.update(nargs="?", const="true")
        p.add_argument(flag, **kw)  # type: ignore[arg-type]
    ns = vars(p.parse_args(list(argv)))
    values: dict[str, object] = {}
    for flag, suffix, typ, default, _ in _FLAGS:
        key = flag[2:].replace("-", "_")
        var = ENV_PREFIX + suffix
        raw = ns[key] if ns[key] is not None else env.get(var)
        if raw is None and key in _ENV_FALLBACKS:
            raw = env.get(_ENV_FALLBACKS[key])
        if raw is None:
            values[key] = default
            continue
        try:
            values[key] = typ(raw)  # type: ignore[operator]
        except ValueError:
            raise ConfigError(f"{flag} (or ${var}) = {raw!r} is not a valid {getattr(typ, '__name__', typ)}; "
                              f"fix the value") from None
    return _validate(values)


def _validate(v: dict[str, object]) -> Settings:
    def need(cond: bool, flag: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{flag}: {msg}")

    need(bool(v["domain"]), "--domain", "required (or $VIRTMIGRATE_DOMAIN): the domain name or UUID to migrate")
    need(bool(v["destination_uri"]), "--destination-uri",
         "required (or $VIRTMIGRATE_DESTINATION_URI), e.g. qemu+tcp://10.0.0.2/system")
    need(int(v["bandwidth"]) >= 0, "--bandwidth", "must be >= 0 (0 = unlimited)")  # type: ignore[call-overload]
    for flag in ("completion_timeout_per_gib", "progress_timeout", "poll_interval", "downtime_step_delay"):
        need(float(v[flag]) > 0, "--" + flag.replace("_", "-"), "must be > 0")  # type: ignore[arg-type]
    need(int(v["max_downtime"]) >= 1, "--max-downtime", "must be >= 1 ms")  # type: ignore[call-overload]
    need(int(v["downtime_steps"]) >= 1, "--downtime-steps", "must be >= 1")  # type: ignore[call-overload]
    need(bool(v["namespace"]) or not v["migration"], "--namespace", "required with --migration")
    need(bool(v["migration"]) or not v["await_target_uid"], "--migration",
         "required with --await-target-uid (the Migration whose target the agent waits for)")
    need(float(v["await_target_timeout"]) > 0, "--await-target-timeout", "must be > 0")  # type: ignore[arg-type]
    need(str(v["log_level"]) in ("debug", "info", "warning", "error"), "--log-level",
         "must be debug, info, warning or error")
    policy = Policy(
        bandwidth_mibps=int(v["bandwidth"]),  # type: ignore[call-overload]
        completion_timeout_per_gib_s=float(v["completion_timeout_per_gib"]),  # type: ignore[arg-type]
        progress_timeout_s=float(v["progress_timeout"]),  # type: ignore[arg-type]
        max_downtime_ms=int(v["max_downtime"]),  # type: ignore[call-overload]
        downtime_steps=int(v["downtime_steps"]),  # type: ignore[call-overload]
        downtime_step_delay_per_gib_s=float(v["downtime_step_delay"]),  # type: ignore[arg-type]
        allow_auto_converge=bool(v["allow_auto_converge"]), allow_post_copy=bool(v["allow_post_copy"]),
        allow_pause=bool(v["allow_pause"]), poll_interval_s=float(v["poll_interval"]),  # type: ignore[arg-type]
    )
    return Settings(domain=str(v["domain"]), destination_uri=str(v["destination_uri"]),
                    source_uri=str(v["source_uri"]), migration_uri=str(v["migration_uri"]), policy=policy,
                    termination_message_path=str(v["termination_message_path"]),
                    migration=str(v["migration"]), namespace=str(v["namespace"]),
                    kubeconfig=str(v["kubeconfig"]), log_level=str(v["log_level"]),
                    await_target_uid=str(v["await_target_uid"]),
                    await_target_timeout_s=float(v["await_target_timeout"]))  # type: ignore[arg-type]
