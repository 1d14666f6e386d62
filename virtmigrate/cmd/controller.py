"""`virtmigrate-controller`: the migration controller and the VM controller, behind leader election.

Flags (each also a VIRTMIGRATE_* variable) are parsed by virtmigrate.controller.config. The process
serves /metrics, /healthz and /readyz at once; it runs the controllers only while it holds the
Lease (with --leader-elect=false, at once). SIGTERM/SIGINT stop the workers, release the Lease and
exit 0; losing the Lease without being asked exits 1 so the replica restarts clean (client-go does
the same).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from virtmigrate import errors
from virtmigrate.clock import RealClock
from virtmigrate.controller.config import ControllerConfig, parse_config
from virtmigrate.controller.evacuation.controller import EvacuationConfig, EvacuationController
from virtmigrate.controller.events import KubeEventRecorder
from virtmigrate.controller.leaderelection import KubeLeaseLock, LeaderElectionConfig, LeaderElector
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration.controller import MigrationController
from virtmigrate.controller.server import OpsServer
from virtmigrate.informer import FactoryConfig, InformerConfig, SharedInformerFactory
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import NAMESPACES

log = structlog.get_logger("virtmigrate.controller")


def configure_logging(fmt: str, level: str) -> None:
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def _start_vm_controller(client: KubeClient, factory: SharedInformerFactory, cfg: ControllerConfig,
                         recorder: KubeEventRecorder, registry: CollectorRegistry,
                         stop: threading.Event) -> threading.Thread | None:
    """Run the VM controller (virtmigrate/controller/vm/controller.py) on the same factory.

    The one place that knows its constructor; returns its thread, or None when it is not installed."""
    try:
        mod = importlib.import_module("virtmigrate.controller.vm.controller")
    except ImportError:
        log.warning("vm_controller_missing")
        return None
    ctor: Callable[..., Any] = mod.VMController
    vmc = ctor(client, factory, recorder=recorder, registry=registry, image_dirs=cfg.image_dirs,
               node_access=cfg.node_access)
    t = threading.Thread(target=vmc.run, args=(cfg.workers, stop), name="vm-controller", daemon=True)
    t.start()
    return t


def _start_evacuation_controller(client: KubeClient, factory: SharedInformerFactory, cfg: ControllerConfig,
                                 recorder: KubeEventRecorder, registry: CollectorRegistry,
                                 stop: threading.Event) -> threading.Thread:
    """Run the evacuation controller (virtmigrate/controller/evacuation/) on the same factory."""
    config = EvacuationConfig(drain_taint_key=cfg.drain_taint_key,
                              default_node_selector=cfg.default_node_selector)
    evc = EvacuationController(client, factory, recorder=recorder, config=config, registry=registry)
    t = threading.Thread(target=evc.run, args=(max(cfg.workers // 2, 1), stop), name="evacuation-controller",
                         daemon=True)
    t.start()
    return t


class App:
    """The process: ops server always, controllers while leading."""

    def __init__(self, cfg: ControllerConfig, client: KubeClient, registry: CollectorRegistry) -> None:
        self.cfg = cfg
        self.client = client
        self.registry = registry
        self.metrics = MigrationMetrics(registry)
        self.controller: MigrationController | None = None
        self.elector: LeaderElector | None = None
        self.lost = False

    def ready(self) -> bool:
        if self.elector is not None and not self.elector.is_leader():
            return True  # a healthy standby is ready: it takes over when the leader goes
        return self.controller is not None and self.controller.has_synced()

    def healthy(self) -> bool:
        return self.controller is None or self.controller.healthy()

    def lead(self, stop: threading.Event) -> None:
        """Run the controllers until `stop` (leadership lost or shutdown)."""
        cfg = self.cfg
        # --namespaces scopes what the informers list and watch, not only what is reconciled.
        factory = SharedInformerFactory(self.client, FactoryConfig(defaults=InformerConfig(registry=self.registry),
                                                                   namespaces=cfg.namespaces))
        writer = self.client.without_answers()  # the controllers never read what a write echoes
        recorder = KubeEventRecorder(writer)
        self.controller = MigrationController(writer, factory, config=cfg, recorder=recorder,
                                              metrics=self.metrics, clock=RealClock(), registry=self.registry)
        vm_thread = (_start_vm_controller(writer, factory, cfg, recorder, self.registry, stop)
                     if cfg.run_vm_controller else None)
        evacuation_thread = _start_evacuation_controller(writer, factory, cfg, recorder, self.registry, stop)
        factory.start(stop)
        try:
            self.controller.run(cfg.workers, stop)
        finally:
            for t in (vm_thread, evacuation_thread):
                if t is not None:
                    t.join(timeout=30)
            recorder.stop()
            factory.shutdown()

    def run(self, stop: threading.Event) -> int:
        cfg = self.cfg
        if not cfg.leader_elect:
            self.lead(stop)
            return 0
        _ensure_namespace(self.client, cfg.lease_namespace)
        lock = KubeLeaseLock(self.client, cfg.lease_namespace, cfg.lease_name, cfg.identity)

        def stopped() -> None:
            self.lost = not stop.is_set()

        self.elector = LeaderElector(LeaderElectionConfig(
            lock=lock, on_started_leading=self.lead, on_stopped_leading=stopped, name=cfg.lease_name))
        self.elector.run(stop)
        return 1 if self.lost else 0


def _ensure_namespace(client: KubeClient, name: str) -> None:
    """The Lease's namespace (a real install creates it; the local cluster may not have it yet)."""
    with contextlib.suppress(errors.AlreadyExists, errors.Forbidden):
        client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except errors.ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    configure_logging(cfg.log_format, cfg.log_level)
    client = KubeClient.auto(cfg.kubeconfig or None)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("controller_signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = App(cfg, client, REGISTRY)
    server: OpsServer | None = None
    if cfg.metrics_address or cfg.metrics_fd:
        server = OpsServer(cfg.metrics_address, REGISTRY, ready=app.ready, healthy=app.healthy, fd=cfg.metrics_fd)
        server.start()
        log.info("ops_server_listening", address=server.address, fd=cfg.metrics_fd or None)
    log.info("controller_starting", identity=cfg.identity, leader_elect=cfg.leader_elect,
             namespaces=list(cfg.namespaces) or "all", workers=cfg.workers)
    try:
        return app.run(stop)
    finally:
        if server is not None:
            server.stop()
        log.info("controller_exited", lost_lease=app.lost)


if __name__ == "__main__":
    sys.exit(main())
