"""The integration tier's in-process controllers: the migration controller or the VM controller run in this
process, with two workers, against the tier's real API server (tests/conftest.py) until the test ends.

The cluster-side configuration they run with is what an admin of `virtmigrate-controller` would set: images
only under IMAGES, and the policy LIMITS (tests/integration/test_migration_policy.py reads both).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

import pytest
from prometheus_client import CollectorRegistry

from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.events import KubeEventRecorder
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration.controller import MigrationController
from virtmigrate.controller.policy import ImageDirs, PolicyLimits
from virtmigrate.controller.vm.controller import VMController
from virtmigrate.informer import SharedInformerFactory
from virtmigrate.kube import KubeClient

IMAGES = "/var/lib/virtmigrate/images"  # virtmigrate-controller's default --image-dirs
IMAGE_DIRS = ImageDirs(cluster=(IMAGES,))
LIMITS = PolicyLimits(max_bandwidth_mib_s=100, max_downtime_ms=1000, permit_post_copy=False)


class _Runnable(Protocol):
    def run(self, workers: int, stop: threading.Event) -> None: ...


C = TypeVar("C", bound=_Runnable)


@contextmanager
def running(kube: KubeClient, build: Callable[[SharedInformerFactory, KubeEventRecorder], C]) -> Iterator[C]:
    """The controller `build` makes, its informers started and two workers running; stopped on exit (its
    workers joined, its Events flushed, its informers shut down)."""
    factory = SharedInformerFactory(kube)
    recorder = KubeEventRecorder(kube)
    ctl = build(factory, recorder)
    stop = threading.Event()
    factory.start(stop)
    t = threading.Thread(target=ctl.run, args=(2, stop), daemon=True)
    t.start()
    try:
        yield ctl
    finally:
        stop.set()
        t.join(30)
        recorder.stop()
        factory.shutdown()


@pytest.fixture
def migration_controller(kube: KubeClient, namespace: str) -> Iterator[MigrationController]:
    """The migration controller, serving only the test's namespace, with LIMITS and IMAGE_DIRS."""
    # history_limit=-1: these tests read every finished Migration back (pruning is tested on its own).
    config = ControllerConfig(namespaces=(namespace,), workers=2, policy_limits=LIMITS, image_dirs=IMAGE_DIRS,
                              history_limit=-1)
    with running(kube, lambda factory, recorder: MigrationController(
            kube, factory, config=config, recorder=recorder, metrics=MigrationMetrics(CollectorRegistry()),
            registry=CollectorRegistry())) as ctl:
        yield ctl


@pytest.fixture
def vm_controller(kube: KubeClient) -> Iterator[VMController]:
    """The VM controller, every namespace, kernels and disks allowed only under IMAGE_DIRS."""
    with running(kube, lambda factory, recorder: VMController(
            kube, factory, recorder=recorder, registry=CollectorRegistry(), image_dirs=IMAGE_DIRS)) as ctl:
        yield ctl
