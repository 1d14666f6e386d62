"""Informers in the style of client-go's tools/cache: reflector, indexed store, shared informer, factory.

Fed by virtmigrate.kube (a `ListerWatcher`); consumed by controllers, which read the caches
and turn handler events into work-queue keys. Knows nothing of the work queue.
"""

from virtmigrate.informer.factory import FactoryConfig, SharedInformerFactory, wait_for_cache_sync
from virtmigrate.informer.handlers import (
    DeletedFinalStateUnknown,
    FuncHandler,
    ResourceEventHandler,
    object_of,
)
from virtmigrate.informer.reflector import Reflector, ReflectorConfig
from virtmigrate.informer.shared import (
    HandlerRegistration,
    InformerConfig,
    SharedInformer,
    strip_managed_fields,
)
from virtmigrate.informer.store import (
    NAMESPACE_INDEX,
    NODE_INDEX,
    VM_INDEX,
    Store,
    index_by_namespace,
    index_by_node,
    index_by_vm,
    label_index,
    meta_namespace_key,
    split_meta_namespace_key,
)

__all__ = [
    "NAMESPACE_INDEX",
    "NODE_INDEX",
    "VM_INDEX",
    "DeletedFinalStateUnknown",
    "FactoryConfig",
    "FuncHandler",
    "HandlerRegistration",
    "InformerConfig",
    "Reflector",
    "ReflectorConfig",
    "ResourceEventHandler",
    "SharedInformer",
    "SharedInformerFactory",
    "Store",
    "index_by_namespace",
    "index_by_node",
    "index_by_vm",
    "label_index",
    "meta_namespace_key",
    "object_of",
    "split_meta_namespace_key",
    "strip_managed_fields",
    "wait_for_cache_sync",
]
