"""EnvoyFilter patches applied to one proxy's translated config (model/envoyfilter.py).

`ProxyConfig` holds a proxy's listeners, clusters, route configurations and
VHDS virtual hosts as messages; `apply` runs each patch of each filter in
order, as Istio does, after translation:

- context: a gateway's config is GATEWAY; a sidecar's listener is
  SIDECAR_INBOUND or SIDECAR_OUTBOUND by its `traffic_direction`, a cluster by
  its name (``inbound|…`` or not), a route configuration inline in an inbound
  listener is inbound and one served over RDS outbound; ANY is all of them;
- LISTENER, CLUSTER: ADD appends the value, MERGE and REMOVE act on the
  matching ones; FILTER_CHAIN likewise inside matching listeners (INSERT_FIRST
  puts it first); NETWORK_FILTER, LISTENER_FILTER and HTTP_FILTER (inside the
  HTTP connection managers of matching chains) on the named filter:
  INSERT_BEFORE / INSERT_AFTER / REPLACE / MERGE / REMOVE the named one, and
  with no name INSERT_BEFORE puts the value first, INSERT_AFTER and ADD last
  (Istio's rules); ROUTE_CONFIGURATION merges, VIRTUAL_HOST and HTTP_ROUTE act
  inside matching route configurations (and on VHDS virtual hosts);
- MERGE is a proto merge (repeated fields append, scalars replace) that
  also merges inside `Any` fields of the same type, so a filter's typed config
  merges field by field, as Istio merges it.

`portNumber` matches a listener's port or a filter chain's destination port; a
route configuration's port is its inbound listener's, or its RDS name when that
is a port (transparent mode); the explicit HTTP proxy's single `http_proxy`
configuration serves every port, so there a port narrows the virtual hosts to
those with a domain on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from google.protobuf import any_pb2, descriptor, message

from legation.model import Workload
from legation.model.envoyfilter import (
    ApplyTo,
    ClusterMatch,
    ConfigPatch,
    EnvoyFilter,
    ListenerMatch,
    Operation,
    PatchContext,
    RouteMatch,
    ordered,
)
from legation.model.envoyproto import message_class
from legation.model.gatewayapi import GATEWAY_NAME_LABEL
from legation.translators import names

HCM_NAME = "envoy.filters.network.http_connection_manager"
HCM = http_connection_manager_pb2.HttpConnectionManager
M = TypeVar("M", bound=message.Message)


@dataclass(slots=True)
class ProxyConfig:
    listeners: dict[str, listener_pb2.Listener] = field(default_factory=dict)
    clusters: dict[str, cluster_pb2.Cluster] = field(default_factory=dict)
    routes: dict[str, route_pb2.RouteConfiguration] = field(default_factory=dict)
    vhosts: dict[str, route_components_pb2.VirtualHost] = field(default_factory=dict)  # VHDS


def filters_for(filters: Iterable[EnvoyFilter], workload: Workload, root_namespace: str
                ) -> list[EnvoyFilter]:
    """The filters that apply to `workload`'s proxy, in the order they are applied."""
    gateway = dict(workload.labels).get(GATEWAY_NAME_LABEL, "")
    return ordered([f for f in filters if f.selects(
        namespace=workload.namespace, labels=workload.labels, root_namespace=root_namespace,
        gateway_name=gateway)], root_namespace)


def apply(config: ProxyConfig, filters: Iterable[EnvoyFilter], *, gateway: bool) -> None:
    for f in filters:
        for patch in f.patches:
            _Patcher(config, patch, gateway).run()


def value_of(patch: ConfigPatch, cls: type[M]) -> M:
    out: M = cls()
    out.ParseFromString(patch.value)
    return out


class _Patcher:
    def __init__(self, config: ProxyConfig, patch: ConfigPatch, gateway: bool) -> None:
        self.config, self.patch, self.gateway = config, patch, gateway
        self.lm = patch.listener or ListenerMatch()
        self.rm = patch.route or RouteMatch()
        self.cm = patch.cluster or ClusterMatch()

    def run(self) -> None:
        kind = self.patch.apply_to
        if kind is ApplyTo.CLUSTER:
            self._clusters()
        elif kind is ApplyTo.LISTENER:
            self._listeners()
        elif kind in (ApplyTo.ROUTE_CONFIGURATION, ApplyTo.VIRTUAL_HOST, ApplyTo.HTTP_ROUTE):
            self._routes()
        else:
            for listener in self.config.listeners.values():
                if self._listener_matches(listener):
                    self._inside_listener(listener)

    # -- contexts ----------------------------------------------------------------

    def _context_ok(self, inbound: bool) -> bool:
        want = self.patch.context
        if want is PatchContext.ANY:
            return True
        if self.gateway:
            return want is PatchContext.GATEWAY
        return want is (PatchContext.SIDECAR_INBOUND if inbound else
                        PatchContext.SIDECAR_OUTBOUND)

    def _adds_here(self) -> bool:
        """An ADD of a listener or cluster: in which context it is added (ANY: everywhere;
        SIDECAR_INBOUND / SIDECAR_OUTBOUND: sidecars; GATEWAY: gateways)."""
        want = self.patch.context
        if want is PatchContext.ANY:
            return True
        return (want is PatchContext.GATEWAY) == self.gateway

    # -- clusters ----------------------------------------------------------------

    def _clusters(self) -> None:
        op, clusters = self.patch.operation, self.config.clusters
        if op is Operation.ADD:
            if self._adds_here():
                new = value_of(self.patch, cluster_pb2.Cluster)
                clusters[new.name] = new
            return
        for name in list(clusters):
            if not (self._context_ok(name.startswith("inbound|")) and self._cluster_matches(name)):
                continue
            if op is Operation.REMOVE:
                del clusters[name]
            else:
                merge(clusters[name], value_of(self.patch, cluster_pb2.Cluster))
                if clusters[name].name != name:  # renamed by the merge
                    clusters[clusters[name].name] = clusters.pop(name)

    def _cluster_matches(self, name: str) -> bool:
        cm = self.cm
        if cm.name and cm.name != name:
            return False
        if not (cm.port or cm.service or cm.subset):
            return True
        parsed = names.parse_cluster(name)
        if parsed is None:
            return False
        return ((not cm.port or parsed.port == cm.port)
                and (not cm.service or parsed.host == cm.service)
                and (not cm.subset or parsed.subset == cm.subset))

    # -- listeners ---------------------------------------------------------------

    def _listeners(self) -> None:
        op, listeners = self.patch.operation, self.config.listeners
        if op is Operation.ADD:
            if self._adds_here():
                new = value_of(self.patch, listener_pb2.Listener)
                listeners[new.name] = new
            return
        for name in list(listeners):
            if not self._listener_matches(listeners[name]):
                continue
            if op is Operation.REMOVE:
                del listeners[name]
            else:
                merge(listeners[name], value_of(self.patch, listener_pb2.Listener))

    def _listener_matches(self, listener: listener_pb2.Listener) -> bool:
        if not self._context_ok(listener.traffic_direction == base_pb2.INBOUND):
            return False
        lm = self.lm
        if lm.name and listener.name != lm.name:
            return False
        return not lm.port or _port(listener) == lm.port or any(
            c.filter_chain_match.destination_port.value == lm.port
            for c in listener.filter_chains)

    def _chain_matches(self, listener: listener_pb2.Listener,
                       chain: listener_components_pb2.FilterChain) -> bool:
        lm, m = self.lm, chain.filter_chain_match
        if lm.port and _port(listener) != lm.port and m.destination_port.value != lm.port:
            return False
        if lm.chain and chain.name != lm.chain:
            return False
        if lm.sni and lm.sni not in m.server_names:
            return False
        if lm.transport_protocol and m.transport_protocol != lm.transport_protocol:
            return False
        if lm.application_protocols and not set(lm.application_protocols) <= set(
                m.application_protocols):
            return False
        if lm.destination_port and m.destination_port.value != lm.destination_port:
            return False
        return not lm.filter or any(f.name == lm.filter for f in chain.filters)

    def _inside_listener(self, listener: listener_pb2.Listener) -> None:
        kind, op = self.patch.apply_to, self.patch.operation
        if kind is ApplyTo.LISTENER_FILTER:
            name = self.lm.listener_filter
            _edit(listener.listener_filters, op, lambda f: f.name == name, bool(name),
                  lambda: value_of(self.patch, listener_components_pb2.ListenerFilter))
            return
        if kind is ApplyTo.FILTER_CHAIN:
            if op in (Operation.ADD, Operation.INSERT_FIRST):
                _edit(listener.filter_chains, op, lambda c: False, False,
                      lambda: value_of(self.patch, listener_components_pb2.FilterChain))
                return
            _edit(listener.filter_chains, op, lambda c: self._chain_matches(listener, c), True,
                  lambda: value_of(self.patch, listener_components_pb2.FilterChain))
            return
        named, sub = self.lm.filter, self.lm.sub_filter
        for chain in listener.filter_chains:
            if not self._chain_matches(listener, chain):
                continue
            if kind is ApplyTo.NETWORK_FILTER:
                _edit(chain.filters, op, lambda f: f.name == named, bool(named),
                      lambda: value_of(self.patch, listener_components_pb2.Filter))
                continue
            for f in chain.filters:  # HTTP_FILTER: inside the chain's connection managers
                if f.name == HCM_NAME and f.typed_config.Is(HCM.DESCRIPTOR):
                    hcm = HCM()
                    f.typed_config.Unpack(hcm)
                    _edit(hcm.http_filters, op, lambda h: h.name == sub, bool(sub),
                          lambda: value_of(self.patch, http_connection_manager_pb2.HttpFilter))
                    f.typed_config.Pack(hcm)

    # -- routes ------------------------------------------------------------------

    def _routes(self) -> None:
        for name, rc in self.config.routes.items():
            if self._context_ok(False) and self._route_config_matches(name, _rds_port(name)):
                self._in_route_config(rc, vhost_port=self._http_proxy_port(name))
        for listener in self.config.listeners.values():  # inline (inbound) configurations
            inbound = listener.traffic_direction == base_pb2.INBOUND
            if not self._context_ok(inbound):
                continue
            for chain in listener.filter_chains:
                for f in chain.filters:
                    if f.name != HCM_NAME or not f.typed_config.Is(HCM.DESCRIPTOR):
                        continue
                    hcm = HCM()
                    f.typed_config.Unpack(hcm)
                    if not hcm.HasField("route_config"):
                        continue
                    port = chain.filter_chain_match.destination_port.value or _port(listener)
                    if self._route_config_matches(hcm.route_config.name, port):
                        self._in_route_config(hcm.route_config, vhost_port=0)
                        f.typed_config.Pack(hcm)
        if self.patch.apply_to is not ApplyTo.ROUTE_CONFIGURATION:
            self._vhds()

    def _http_proxy_port(self, name: str) -> int:
        """The port that narrows the virtual hosts of the explicit proxy's configuration."""
        return self.rm.port if name == names.HTTP_PROXY_ROUTE else 0

    def _route_config_matches(self, name: str, port: int) -> bool:
        rm = self.rm
        if rm.name and rm.name != name:
            return False
        return not (rm.port and port and port != rm.port)

    def _in_route_config(self, rc: route_pb2.RouteConfiguration, *, vhost_port: int) -> None:
        kind, op = self.patch.apply_to, self.patch.operation
        if kind is ApplyTo.ROUTE_CONFIGURATION:
            merge(rc, value_of(self.patch, route_pb2.RouteConfiguration))
            return
        if kind is ApplyTo.VIRTUAL_HOST and op is Operation.ADD:
            rc.virtual_hosts.append(value_of(self.patch, route_components_pb2.VirtualHost))
            return
        keep = []
        for vh in rc.virtual_hosts:
            if not self._vhost_matches(vh, vh.name, vhost_port):
                keep.append(vh)
                continue
            if kind is ApplyTo.VIRTUAL_HOST and op is Operation.REMOVE:
                continue
            self._in_vhost(vh)
            keep.append(vh)
        if len(keep) != len(rc.virtual_hosts):
            copies = [_copy(vh) for vh in keep]
            del rc.virtual_hosts[:]
            rc.virtual_hosts.extend(copies)

    def _vhds(self) -> None:
        """VHDS virtual hosts (delta proxies): named ``<route configuration>/<vhost>``."""
        if not self._context_ok(False):
            return
        kind, op = self.patch.apply_to, self.patch.operation
        for name in list(self.config.vhosts):
            parsed = names.parse_vhds_virtual_host(name)
            if parsed is None:
                continue
            route, host = parsed
            if not self._route_config_matches(route, _rds_port(route)):
                continue
            vh = self.config.vhosts[name]
            if not self._vhost_matches(vh, host, self._http_proxy_port(route)):
                continue
            if kind is ApplyTo.VIRTUAL_HOST and op is Operation.REMOVE:
                del self.config.vhosts[name]
            else:
                self._in_vhost(vh)

    def _vhost_matches(self, vh: route_components_pb2.VirtualHost, name: str, port: int
                       ) -> bool:
        if self.rm.vhost and self.rm.vhost != name:
            return False
        return not port or any(d.endswith(f":{port}") for d in vh.domains)

    def _in_vhost(self, vh: route_components_pb2.VirtualHost) -> None:
        kind, op = self.patch.apply_to, self.patch.operation
        if kind is ApplyTo.VIRTUAL_HOST:  # MERGE
            merge(vh, value_of(self.patch, route_components_pb2.VirtualHost))
            return
        rm = self.rm
        _edit(vh.routes, op, lambda r: _route_matches(r, rm), bool(rm.route or rm.action),
              lambda: value_of(self.patch, route_components_pb2.Route))


def _route_matches(route: route_components_pb2.Route, rm: RouteMatch) -> bool:
    if rm.route and route.name != rm.route:
        return False
    action = {"ROUTE": "route", "REDIRECT": "redirect", "DIRECT_RESPONSE": "direct_response"}
    return not rm.action or bool(route.WhichOneof("action") == action[rm.action])


def _edit(items: list[M], op: Operation, matches: Callable[[M], bool], targeted: bool,
          value: Callable[[], M]) -> None:
    """One operation on a repeated field of named elements (module docstring)."""
    current = list(items)
    hits = [i for i, x in enumerate(current) if matches(x)] if targeted else []
    out: list[M]
    if op is Operation.ADD or (op is Operation.INSERT_AFTER and not targeted):
        out = [*current, value()]
    elif op is Operation.INSERT_FIRST or (op is Operation.INSERT_BEFORE and not targeted):
        out = [value(), *current]
    elif op in (Operation.INSERT_BEFORE, Operation.INSERT_AFTER):
        if not hits:
            return
        at = hits[0] + (1 if op is Operation.INSERT_AFTER else 0)
        out = [*current[:at], value(), *current[at:]]
    elif not targeted and op is not Operation.MERGE:
        return  # REMOVE / REPLACE need a named target
    else:
        chosen = set(hits) if targeted else set(range(len(current)))
        out = []
        for i, x in enumerate(current):
            if i not in chosen:
                out.append(x)
            elif op is Operation.REPLACE:
                out.append(value())
            elif op is Operation.MERGE:
                merge(x, value())
                out.append(x)
    copies = [_copy(x) for x in out]
    del items[:]  # type: ignore[attr-defined]
    items.extend(copies)  # type: ignore[attr-defined]


def _copy(m: M) -> M:
    out: M = type(m)()
    out.CopyFrom(m)
    return out


def merge(dst: message.Message, src: message.Message) -> None:
    """`src` into `dst` as a proto merge, but inside `Any` fields of the same type too."""
    for fd, value in src.ListFields():
        if fd.message_type is not None and not _repeated(fd):
            target = getattr(dst, fd.name)
            if fd.message_type.full_name == "google.protobuf.Any":
                _merge_any(dst, fd.name, value)
            else:
                target.SetInParent()
                merge(target, value)
        elif _repeated(fd):
            getattr(dst, fd.name).MergeFrom(value)
        else:
            setattr(dst, fd.name, value)


def _repeated(fd: descriptor.FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _merge_any(dst: message.Message, name: str, src: any_pb2.Any) -> None:
    have: any_pb2.Any = getattr(dst, name)
    cls = message_class(src.type_url) if have.type_url == src.type_url else None
    if cls is None:
        have.CopyFrom(src)
        return
    inner, patch = cls.FromString(have.value), cls.FromString(src.value)
    merge(inner, patch)
    have.Pack(inner)


def _port(listener: listener_pb2.Listener) -> int:
    return int(listener.address.socket_address.port_value)


def _rds_port(name: str) -> int:
    """The port a route configuration served over RDS is for, when its name says."""
    tail = name.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() and 0 < int(tail) < 65536 else 0
