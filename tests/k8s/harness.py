"""Running a `KubernetesSource` against the emulated API server in tests:
the official client pointed at it, an oracle of what the store must hold,
a store that records its writes, and bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from kubernetes import client as k8s

from legation.mesh.store import MeshStore
from legation.model import Diagnostic, MeshObject, ObjectKey, object_key
from legation.sources.convert import convert_object
from legation.sources.kubernetes import KubernetesSource


def api_client(url: str) -> Any:
    """The official ApiClient, unmodified, pointed at `url`."""
    cfg = k8s.Configuration()
    cfg.host = url
    cfg.connection_pool_maxsize = 32
    return k8s.ApiClient(cfg)


def expected(objects: Iterable[Mapping[str, Any]]) -> dict[ObjectKey, MeshObject]:
    """What the store must hold for these API objects: each one converted."""
    out: dict[ObjectKey, MeshObject] = {}
    for data in objects:
        obj, _, _ = convert_object(data)
        if obj is not None:
            out[object_key(obj)] = obj
    return out


class RecordingStore(MeshStore):
    """A MeshStore that records every upsert/delete call (to prove nothing is duplicated)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.upserts: list[ObjectKey] = []
        self.deletes: list[ObjectKey] = []
        self.replaces = 0

    def upsert(self, source: str, obj: MeshObject) -> None:
        self.upserts.append(object_key(obj))
        super().upsert(source, obj)

    def delete(self, source: str, key: ObjectKey) -> None:
        self.deletes.append(key)
        super().delete(source, key)

    def replace_source(self, source: str, objects: Iterable[MeshObject],
                       diagnostics: Iterable[Diagnostic] = ()) -> None:
        self.replaces += 1
        super().replace_source(source, objects, diagnostics)

    def forget_calls(self) -> None:
        self.upserts.clear()
        self.deletes.clear()


def diagnostics(store: MeshStore, code: str) -> list[Diagnostic]:
    return [d for d in store.snapshot().diagnostics if d.code == code]


async def until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Wait, bounded, until `predicate()` holds (checked every 10 ms)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def settle() -> None:
    """Let callbacks already posted by reflector threads run on the loop."""
    for _ in range(3):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def running(source: KubernetesSource) -> AsyncIterator[asyncio.Task[None]]:
    """Run `source` in a task; cancel it and wait for its threads on exit."""
    task = asyncio.create_task(source.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task
