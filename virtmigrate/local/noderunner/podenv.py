"""A container's process environment and argv, built from its pod (pure).

Fed by podworker.py with the pod JSON and what the runner provides (paths, API address, credentials);
consumed by container.py to exec the process. Implements the parts of the kubelet's env handling the
local cluster needs: literal values, downward-API `fieldRef`s, `$(VAR)` expansion in command and args,
and the image entry point (our console scripts in the venv: an image `virtmigrate/<x>:tag` with no
command runs `virtmigrate-<x>`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtmigrate.errors import ConfigError

JSON = dict[str, Any]
ENV_TERMINATION_LOG = "VIRTMIGRATE_TERMINATION_LOG"  # where a container writes its termination message
ENV_POD_DIR = "VIRTMIGRATE_POD_DIR"                  # the pod's scratch directory on the node

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


@dataclass(frozen=True)
class RunnerContext:
    """What the runner adds to every container's environment."""

    bin_dir: Path             # where console scripts live (the venv's bin)
    pod_dir: Path             # per-pod scratch directory
    termination_log: Path     # per-container termination-log file
    host_ip: str = "127.0.0.1"
    api_host: str = ""        # KUBERNETES_SERVICE_HOST/PORT
    api_port: int = 0
    kubeconfig: Path | None = None  # the pod's service-account kubeconfig, when it has an identity


def field_value(pod: Mapping[str, Any], path: str, *, host_ip: str) -> str:
    """The value of a downward-API fieldRef on `pod`."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": host_ip, "status.hostIP": host_ip, "status.podIPs": host_ip, "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    m = _LABEL_REF.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError(f"fieldRef {path!r} is not supported by the local node runner")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`, the rest is kept."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))
    return _VAR_REF.sub(sub, text)


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], ctx: RunnerContext) -> dict[str, str]:
    """The full process environment of `container` (raises ConfigError for what cannot be provided)."""
    meta = pod.get("metadata") or {}
    env: dict[str, str] = {
        "PATH": f"{ctx.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root", "HOSTNAME": str(meta.get("name", "")), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
        ENV_TERMINATION_LOG: str(ctx.termination_log), ENV_POD_DIR: str(ctx.pod_dir),
    }
    if ctx.api_host:
        env["KUBERNETES_SERVICE_HOST"] = ctx.api_host
        env["KUBERNETES_SERVICE_PORT"] = str(ctx.api_port)
    if ctx.kubeconfig is not None:
        env["KUBECONFIG"] = str(ctx.kubeconfig)
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        ref = item["valueFrom"] or {}
        if "fieldRef" in ref:
            env[name] = field_value(pod, str(ref["fieldRef"].get("fieldPath", "")), host_ip=ctx.host_ip)
        else:
            kinds = ", ".join(sorted(ref))
            raise ConfigError(f"env {name}: valueFrom {kinds} is not supported by the local node runner")
    return env


def container_argv(container: Mapping[str, Any], env: Mapping[str, str], *, bin_dir: Path) -> list[str]:
    """command + args with `$(VAR)` expanded; argv[0] resolved to a console script in `bin_dir` when one
    of that name exists there; with no command, the image's entry point (`virtmigrate/<x>` -> virtmigrate-<x>)."""
    command = [expand(str(a), env) for a in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    if not command:
        image = str(container.get("image", ""))
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        script = "virtmigrate-" + repo.rsplit("/", 1)[-1] if repo.startswith("virtmigrate/") else ""
        if not script or not (bin_dir / script).exists():
            raise ConfigError(f"container {container.get('name')!r}: no command and image {image!r} has no "
                              "entry point here (images are not pulled; use virtmigrate/<component>)")
        command = [script]
    if "/" not in command[0] and (bin_dir / command[0]).exists():
        command[0] = str(bin_dir / command[0])
    return command + args
