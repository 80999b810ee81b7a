"""An idle stream holds no response: what it pushed is released once written.

Found by benchmarks/fanout.py: with 1,000 idle streams each kept its last
response (and the snapshot behind it) alive, ~50 KB per stream.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from legation.cache import CLUSTER
from legation.xds.protocol import Outgoing

from .xds_harness import Mesh, cluster, eventually

NODE = "ratings.shop"


def _alive() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, Outgoing))


@pytest.mark.parametrize("kind", ["sotw", "delta"])
async def test_idle_stream_keeps_no_response_alive(
    mesh: Mesh, kind: str, sotw: Any, delta: Any
) -> None:
    open_stream = sotw if kind == "sotw" else delta
    mesh.publish(NODE, [cluster("a")])
    async with open_stream(NODE) as client:
        await client.request(CLUSTER)
        await client.ack(await client.recv())
        mesh.publish(NODE, [cluster("a", timeout_s=2)])
        await client.ack(await client.recv())
        # The writer is back asleep once its push is recorded; nothing it wrote stays.
        await eventually(lambda: _alive() == 0, "no response held by the idle stream")
