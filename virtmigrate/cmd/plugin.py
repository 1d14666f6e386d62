"""`kubectl virtmigrate` (console script `kubectl-virtmigrate`): migrate, cancel, explain placement, plan a drain.

    kubectl virtmigrate migrate VM [--to-node N] [--selector k=v ...] [--dry-run]
    kubectl virtmigrate cancel VM
    kubectl virtmigrate explain VM
    kubectl virtmigrate drain-plan NODE
Common flags, as kubectl's: -n/--namespace, --kubeconfig, --context, -o/--output yaml|json; and
--node-selector k=v,... to judge only some nodes (a big cluster, a pool).

The per-node verdicts come from the same code the evacuation controller uses (controller/evacuation/targets.py,
over virtmigrate.scheduler): for every node, whether the VM could go there and, if not, every constraint that
excludes it (the source itself, cordon, taints, merged selectors, affinity, cpu and memory), side by side.

Exit codes: 0 done (explain: always, when the VM exists); 1 an error from the server (NotFound, Forbidden ...)
or the operation cannot be done (migrate or --dry-run with no node that fits, cancel with nothing to cancel,
drain-plan with a VM that would keep the drain waiting); 2 bad usage.
Reads: VMs, Migrations, Nodes, Pods (all namespaces, for free resources; the namespace's when forbidden).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import yaml

from virtmigrate import errors
from virtmigrate.api.constants import API_VERSION, HOSTNAME_LABEL, LABEL_PREFIX, EvictionStrategy
from virtmigrate.api.vm import VM
from virtmigrate.controller.evacuation.targets import Targets, plan_node, targets_for
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import MIGRATIONS, NODES, PODS, VMS

JSON = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")
LABEL_CREATED_BY = f"{LABEL_PREFIX}/created-by"  # "kubectl-virtmigrate" on Migrations this plugin creates


class UsageError(Exception):
    """Bad flags or arguments: exit 2."""


class Failed(Exception):
    """The operation cannot be done: exit 1 with this message."""


# --- pure: reports and tables -------------------------------------------------------------------------

def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned as kubectl's printers do (three spaces between columns)."""
    all_rows = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in all_rows]
    return "\n".join(lines) + "\n"


def node_rows(t: Targets) -> list[list[str]]:
    """One row per node: NODE, FITS, REASONS (every reason, '; '-separated)."""
    return [[node, "no" if reasons else "yes", "; ".join(reasons) or "-"] for node, reasons in t.reasons.items()]


def explain_report(vm: VM, t: Targets) -> JSON:
    return {"vm": vm.key, "node": vm.node, "evictionStrategy": vm.spec.eviction_strategy.value,
            "summary": t.summary, "candidates": list(t.candidates),
            "nodes": [{"name": n, "fits": not r, "reasons": r} for n, r in t.reasons.items()]}


def render_explain(report: Mapping[str, Any]) -> str:
    where = f"runs on {report['node']}" if report["node"] else "is not running"
    head = f"VM {report['vm']} {where} (evictionStrategy {report['evictionStrategy']})\n"
    rows = [[n["name"], "yes" if n["fits"] else "no", "; ".join(n["reasons"]) or "-"] for n in report["nodes"]]
    return head + table(["NODE", "FITS", "REASONS"], rows) + str(report["summary"]) + "\n"


def drain_action(vm: VM, t: Targets | None) -> tuple[str, str]:
    """What a drain does to `vm`: (ACTION, REASON)."""
    strategy = vm.spec.eviction_strategy
    if strategy is EvictionStrategy.NONE:
        return "evict", "evictionStrategy None: the launcher pod is evicted and the guest stops"
    if t is not None and t.movable:
        return "migrate", t.why_not()  # "" unless the VMs together may not fit
    why = t.why_not() if t is not None else "not judged"
    if strategy is EvictionStrategy.LIVE_MIGRATE_IF_POSSIBLE:
        return "shutdown", why
    return "blocked", f"{why} (the drain waits for it)"


def drain_plan_report(node: str, vms: Sequence[VM], targets: Mapping[str, Targets]) -> JSON:
    items = []
    for vm in vms:
        t = targets.get(vm.key)
        action, reason = drain_action(vm, t)
        items.append({"vm": vm.key, "evictionStrategy": vm.spec.eviction_strategy.value, "action": action,
                      "candidates": list(t.candidates) if t is not None else [],
                      "planned": t.planned if t is not None else "", "reason": reason})
    blocked = [i["vm"] for i in items if i["action"] == "blocked"]
    return {"node": node, "vms": items, "completes": not blocked, "blocking": blocked}


def render_drain_plan(report: Mapping[str, Any]) -> str:
    node = report["node"]
    if not report["vms"]:
        return f"node {node} runs no VM: a drain moves nothing\n"
    rows = [[i["vm"], i["evictionStrategy"], i["action"], ",".join(i["candidates"]) or "-", i["reason"] or "-"]
            for i in report["vms"]]
    tail = (f"kubectl drain {node} completes once the migrations finish\n" if report["completes"] else
            f"kubectl drain {node} would wait for: {', '.join(report['blocking'])}\n")
    return table(["VM", "STRATEGY", "ACTION", "TARGETS", "REASON"], rows) + tail


def new_migration(vm: VM, *, to_node: str, selector: Mapping[str, str]) -> JSON:
    node_selector = dict(selector)
    if to_node:
        node_selector[HOSTNAME_LABEL] = to_node
    spec: JSON = {"selector": {"name": vm.name}}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": API_VERSION, "kind": "Migration",
            "metadata": {"generateName": f"{vm.name[:50]}-migration-", "namespace": vm.namespace,
                         "labels": {LABEL_CREATED_BY: "kubectl-virtmigrate"}},
            "spec": spec}


def parse_selector(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            k, sep, v = part.partition("=")
            if not sep or not k:
                raise UsageError(f"--selector {part!r}: expected key=value")
            out[k] = v
    return out


# --- thin: the cluster -----------------------------------------------------------------------------

class Cluster:
    """What the commands read and write, through one KubeClient."""

    def __init__(self, client: KubeClient, namespace: str, *, node_selector: str = "") -> None:
        self.client = client
        self.namespace = namespace
        self.node_selector = node_selector  # a label selector: only these nodes are judged ("" = all)

    def vm(self, name: str) -> VM:
        return VM.parse(self.client.get(VMS, name, self.namespace))

    def nodes(self) -> list[JSON]:
        nodes = self.client.list_all(NODES, label_selector=self.node_selector or None)
        return sorted(nodes, key=lambda n: str(n["metadata"]["name"]))

    def pods(self) -> list[JSON]:
        try:
            return list(self.client.list_all(PODS))
        except errors.Forbidden:
            return list(self.client.list_all(PODS, self.namespace))  # free resources then count these only

    def vms_on(self, node: str) -> list[VM]:
        out = []
        for raw in self.client.list_all(VMS):
            status = raw.get("status") or {}
            if status.get("node") == node and status.get("phase") in ("Running", "Migrating"):
                out.append(VM.parse(raw))
        return sorted(out, key=lambda v: v.key)

    def active_migrations(self, vm: str) -> list[JSON]:
        return [m for m in self.client.list_all(MIGRATIONS, self.namespace)
                if ((m.get("spec") or {}).get("selector") or {}).get("name") == vm
                and (m.get("status") or {}).get("phase") not in TERMINAL]


def _print(obj: Any, output: str, text: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps(obj, indent=4) + "\n")
    elif output == "yaml":
        out.write(yaml.safe_dump(obj, sort_keys=False))
    else:
        out.write(text)


def cmd_explain(c: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    vm = c.vm(args.name)
    t = targets_for(vm, vm.node, c.nodes(), c.pods())
    report = explain_report(vm, t)
    _print(report, args.output, render_explain(report), out)
    return 0


def cmd_migrate(c: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    vm = c.vm(args.name)
    selector = parse_selector(args.selector)
    if to_node := args.to_node:
        selector = {**selector, HOSTNAME_LABEL: to_node}
    if not vm.node:
        raise Failed(f"VM {vm.key} is not running: only a running VM can migrate (set spec.running to true)")
    t = targets_for(vm, vm.node, c.nodes(), c.pods(), migration_node_selector=selector)
    obj = new_migration(vm, to_node="", selector=selector)
    if args.dry_run:
        report = {**explain_report(vm, t), "migration": obj}
        _print(report, args.output, render_explain(report) + (
            "" if t.movable else f"error: no node can take VM {vm.key}\n"), out)
        return 0 if t.movable else 1
    if not t.movable:
        raise Failed(f"no node can take VM {vm.key}: {t.why_not()}\n(kubectl virtmigrate explain {vm.name} "
                     "shows every node's reasons)")
    created = c.client.create(MIGRATIONS, obj, vm.namespace)
    _print(created, args.output, f"migration.kubevirt.io/{created['metadata']['name']} created\n", out)
    return 0


def cmd_cancel(c: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    c.vm(args.name)  # NotFound names the VM
    active = c.active_migrations(args.name)
    if not active:
        raise Failed(f"VM {c.namespace}/{args.name} has no active Migration: nothing to cancel")
    for m in active:
        with contextlib.suppress(errors.NotFound):  # finished and removed meanwhile: nothing left to cancel
            c.client.delete(MIGRATIONS, m["metadata"]["name"], c.namespace)
    names = [m["metadata"]["name"] for m in active]
    _print({"cancelled": names}, args.output, "".join(f"migration.kubevirt.io/{n} deleted\n" for n in names), out)
    return 0


def cmd_drain_plan(c: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    c.client.get(NODES, args.name)  # NotFound names the node
    vms = c.vms_on(args.name)
    movers = [vm for vm in vms if vm.spec.eviction_strategy.migrates]
    targets = plan_node(movers, args.name, c.nodes(), c.pods())
    report = drain_plan_report(args.name, vms, targets)
    _print(report, args.output, render_drain_plan(report), out)
    return 0 if report["completes"] else 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-n", "--namespace", default="")
    common.add_argument("--kubeconfig", default="")
    common.add_argument("--context", default="")
    common.add_argument("-o", "--output", default="", choices=["", "yaml", "json"])
    common.add_argument("--node-selector", default="", help="judge only the nodes with these labels (k=v,...)")
    p = _Parser(prog="kubectl virtmigrate", description="Live-migrate VMs and explain where they can go.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    m = sub.add_parser("migrate", parents=[common], help="create a Migration of VM")
    m.add_argument("name", metavar="VM")
    m.add_argument("--to-node", default="", help="the target node (kubernetes.io/hostname)")
    m.add_argument("--selector", action="append", default=[], help="k=v a target node must carry (repeatable)")
    m.add_argument("--dry-run", action="store_true", help="print where it could go; create nothing")
    for name, text in (("cancel", "delete the VM's active Migration"),
                       ("explain", "every node: could the VM go there, and if not, why")):
        s = sub.add_parser(name, parents=[common], help=text)
        s.add_argument("name", metavar="VM")
    d = sub.add_parser("drain-plan", parents=[common], help="what kubectl drain NODE would do to its VMs")
    d.add_argument("name", metavar="NODE")
    return p


COMMANDS = {"migrate": cmd_migrate, "cancel": cmd_cancel, "explain": cmd_explain, "drain-plan": cmd_drain_plan}


def _namespace(kubeconfig: str, context: str) -> str:
    """The context's namespace, as kubectl picks it; "default" without one."""
    from kubernetes import config as k8s_config

    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig or None)  # type: ignore[no-untyped-call]
    except Exception:  # in-cluster or no kubeconfig: kubectl falls back to "default" too
        return "default"
    ctx = next((c for c in contexts if c["name"] == context), active) if context else active
    return str(((ctx or {}).get("context") or {}).get("namespace") or "default")


def main(argv: list[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        err.write(f"error: {e}\n")
        return 2
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG", "")
    try:
        client = (KubeClient.from_kubeconfig(kubeconfig or None, context=args.context or None)
                  if kubeconfig or args.context else KubeClient.auto())
        namespace = args.namespace or _namespace(kubeconfig, args.context)
        return COMMANDS[args.command](Cluster(client, namespace, node_selector=args.node_selector), args, out)
    except UsageError as e:
        err.write(f"error: {e}\n")
        return 2
    except Failed as e:
        err.write(f"error: {e}\n")
        return 1
    except errors.NotFound:
        kind = "nodes" if args.command == "drain-plan" else "vms.kubevirt.io"
        err.write(f'Error from server (NotFound): {kind} "{args.name}" not found\n')
        return 1
    except (errors.KubeError, errors.ValidationError) as e:
        err.write(f"error: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
