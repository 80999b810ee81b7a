"""Content-addressed resources, per-proxy snapshots, and watch notification.

Between the pipeline (which writes) and the xDS streams (which read). Knows
protobuf only as opaque messages to serialize; knows nothing of gRPC.
"""

from legation.cache import wire
from legation.cache.cache import SnapshotCache, Watch
from legation.cache.resources import (
    CLUSTER,
    DELTA_ONLY,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SECRET,
    VIRTUAL_HOST,
    WILDCARD_TYPES,
    Resource,
    short_name,
    version_entry,
    version_of,
)
from legation.cache.snapshot import ProxyError, Snapshot, SnapshotBase

__all__ = [
    "CLUSTER",
    "DELTA_ONLY",
    "ENDPOINT",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "SECRET",
    "VIRTUAL_HOST",
    "WILDCARD_TYPES",
    "ProxyError",
    "Resource",
    "Snapshot",
    "SnapshotBase",
    "SnapshotCache",
    "Watch",
    "short_name",
    "version_entry",
    "version_of",
    "wire",
]
