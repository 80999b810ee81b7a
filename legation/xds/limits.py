"""What one xDS client may send, checked before it costs anything.

Every stream's first request is read before any credential is checked (the
node id names who is asking), so everything it carries is bounded here, and
nothing a client chooses is logged or kept at its full size:

- `node.id` at most MAX_NODE_ID bytes, the whole `Node` (metadata, locality,
  user agent) at most MAX_NODE_BYTES: a stream over either is refused with
  INVALID_ARGUMENT before authentication; the log shows a clipped id;
- at most MAX_NAMES_PER_REQUEST resource names in one request, none longer
  than MAX_NAME_BYTES: a request over either ends its stream
  (RESOURCE_EXHAUSTED / INVALID_ARGUMENT);
- a NACK's `error_detail.message` is kept, logged and shown clipped to
  MAX_DETAIL_CHARS (Envoy's own messages are far shorter);
- at most MAX_STREAMS_PER_PEER concurrent streams from one IP address;
- gRPC itself refuses any message over MAX_RECEIVE_BYTES (2 MiB), before it is parsed
  (`grpc.max_receive_message_length`).

A real Envoy or gRPC client stays far inside every limit: an Istio node id is
about 100 bytes, its Node a few KiB, a SotW EDS request of 10,000 clusters
about 600 KiB.
"""

from __future__ import annotations

from typing import Any

import grpc

Refusal = tuple[grpc.StatusCode, str]  # the stream ends with this status

MAX_NODE_ID = 1024
MAX_NODE_BYTES = 64 * 1024
MAX_NAMES_PER_REQUEST = 50_000
MAX_NAME_BYTES = 4096
MAX_DETAIL_CHARS = 4096
MAX_STREAMS_PER_PEER = 10_000
MAX_RECEIVE_BYTES = 2 * 1024 * 1024
LOGGED_ID_CHARS = 200  # of an id that is refused for its size


def clip(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text)} characters, clipped]"


def check_node(node: Any) -> Refusal | None:
    """Why a first request's node is over the limits (module docstring), or None."""
    size = len(node.id.encode())
    if size > MAX_NODE_ID:
        return (grpc.StatusCode.INVALID_ARGUMENT,
                f"node.id is {size} bytes; at most {MAX_NODE_ID} are accepted")
    total = node.ByteSize()
    if total > MAX_NODE_BYTES:
        return (grpc.StatusCode.INVALID_ARGUMENT,
                f"the node (id, metadata, locality, ...) is {total} bytes; at most "
                f"{MAX_NODE_BYTES} are accepted")
    return None


def check_request(request: Any, *, delta: bool) -> Refusal | None:
    """Why a request names too many resources, or too long a name; or None."""
    fields = (("resource_names_subscribe", "resource_names_unsubscribe") if delta
              else ("resource_names",))
    for name in fields:
        names = getattr(request, name)
        if len(names) > MAX_NAMES_PER_REQUEST:
            return (grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{name} holds {len(names)} names; at most {MAX_NAMES_PER_REQUEST} per "
                    "request are accepted")
        for n in names:
            if len(n) > MAX_NAME_BYTES:
                return (grpc.StatusCode.INVALID_ARGUMENT,
                        f"a name in {name} is {len(n)} characters; at most {MAX_NAME_BYTES} "
                        "are accepted")
    return None


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].partition("]")[0]
    if kind in ("ipv4", "ipv6"):
        return rest.rpartition(":")[0]
    return peer  # unix sockets and the like: one bucket each
