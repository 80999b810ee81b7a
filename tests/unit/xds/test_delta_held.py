"""Delta streams sent the same whole set share one record of what they hold, until theirs
diverges (memory per connected proxy, issue 9)."""

from __future__ import annotations

import structlog
from envoy.config.route.v3 import route_components_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from legation.cache import PUSH_ORDER, VIRTUAL_HOST, Resource, Snapshot, SnapshotBase
from legation.metrics import Metrics
from legation.xds.delta import DeltaProtocol
from legation.xds.protocol import StreamEnv
from legation.xds.status import StatusBoard


def vhost(name: str, domain: str) -> Resource:
    return Resource.of(VIRTUAL_HOST, name, route_components_pb2.VirtualHost(
        name=name, domains=[domain]))


def stream() -> DeltaProtocol:
    _, status = StatusBoard().open("node", "delta-ads")
    proto = DeltaProtocol(StreamEnv(node_id="node", kind="delta-ads", types=PUSH_ORDER,
                                    status=status, metrics=Metrics(),
                                    log=structlog.get_logger("test")))
    proto.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=VIRTUAL_HOST))
    return proto


def test_streams_share_what_they_hold_until_one_diverges() -> None:
    hosts = [vhost(f"http_proxy/s{i}", f"s{i}") for i in range(50)]
    base = SnapshotBase.of(hosts)
    snapshot = Snapshot.build([], base=base)
    a, b = stream(), stream()
    sent_a = list(a.responses(snapshot))
    sent_b = list(b.responses(snapshot))
    assert len(sent_a) == len(sent_b) == 1
    held_a, held_b = a.states[VIRTUAL_HOST].has, b.states[VIRTUAL_HOST].has
    assert held_a._data is held_b._data  # one dict for both
    assert dict(held_a._data) == {r.name: r.version for r in hosts}

    # a NACKs: it holds what it rejected at an unknown version; b's record is untouched
    a.on_request(discovery_pb2.DeltaDiscoveryRequest(
        type_url=VIRTUAL_HOST, response_nonce=sent_a[0].nonce,
        error_detail=status_pb2.Status(code=13, message="no")))
    assert held_a.get("http_proxy/s0") == ""
    assert held_b.get("http_proxy/s0") == hosts[0].version
    assert held_a._data is not held_b._data

    # the next change goes to each as the diff of what it holds
    changed = vhost("http_proxy/s1", "s1-new")
    later = Snapshot.build([], base=SnapshotBase.of([hosts[0], changed, *hosts[2:]],
                                                    parent=base))
    [to_b] = b.responses(later)
    got = discovery_pb2.DeltaDiscoveryResponse.FromString(to_b.message)
    assert [r.name for r in got.resources] == ["http_proxy/s1"]
    [to_a] = a.responses(later)
    got = discovery_pb2.DeltaDiscoveryResponse.FromString(to_a.message)
    assert len(got.resources) == 50  # all re-sent: it holds every one at an unknown version
