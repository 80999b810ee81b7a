"""The xDS gRPC servers: ADS and CDS/EDS/LDS/RDS/SDS, state-of-the-world and delta.

The only package that knows gRPC streams. Reads per-proxy snapshots from
`legation.cache.SnapshotCache`, writes what each proxy was sent, ACKed and
rejected to `legation.xds.status.StatusBoard`. Layout (after go-control-plane):

- server.py        XdsServer: services, options, health, reflection, lifecycle
- stream.py        one stream's life: first request, auth hook, reader/writer tasks
- sotw.py          state-of-the-world protocol state machine
- delta.py         incremental protocol state machine
- subscription.py  wildcard and named subscriptions
- protocol.py      what both protocols share (nonces, ACK/NACK bookkeeping)
"""

from legation.xds.protocol import StreamRejected
from legation.xds.server import XdsServer
from legation.xds.stream import Authenticator

__all__ = ["Authenticator", "StreamRejected", "XdsServer"]
