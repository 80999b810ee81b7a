"""names.py: every format round-trips through its parser; foreign names are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from legation.translators import names
from legation.translators.names import ClusterName, Direction

ports = st.integers(min_value=1, max_value=65535)
dns_label = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
# Kubernetes object names: DNS subdomains, so dots are allowed
object_name = st.lists(dns_label, min_size=1, max_size=3).map(".".join)
fqdn = st.tuples(dns_label, dns_label).map(lambda t: f"{t[0]}.{t[1]}.svc.cluster.local")
ipv4 = st.ip_addresses(v=4).map(str)
ip = st.ip_addresses().map(str)


@given(fqdn, ports, st.one_of(st.just(""), dns_label))
def test_outbound_cluster_round_trips(host: str, port: int, subset: str) -> None:
    name = names.outbound_cluster(host, port, subset)
    assert names.parse_cluster(name) == ClusterName(
        direction=Direction.OUTBOUND, port=port, subset=subset, host=host
    )


@given(ports)
def test_inbound_cluster_round_trips(port: int) -> None:
    name = names.inbound_cluster(port)
    assert name == f"inbound|{port}||"
    assert names.parse_cluster(name) == ClusterName(direction=Direction.INBOUND, port=port)


def test_cluster_names_use_istio_format() -> None:
    assert (
        names.outbound_cluster("catalog.shop.svc.cluster.local", 9080)
        == "outbound|9080||catalog.shop.svc.cluster.local"
    )
    assert names.outbound_cluster("r.shop.svc.cluster.local", 80, "v2") == (
        "outbound|80|v2|r.shop.svc.cluster.local"
    )


@pytest.mark.parametrize(
    "name",
    [
        "catalog",
        "outbound|9080||",  # outbound needs a host
        "inbound|9080|v1|",  # inbound has no subset
        "inbound|9080||host",
        "outbound|0||h",
        "outbound|65536||h",
        "outbound|+80||h",
        "outbound|080||h",
        "outbound|80|a|b|c",
        "sideways|80||h",
        "outbound|http||h",
    ],
)
def test_parse_cluster_refuses_foreign_names(name: str) -> None:
    assert names.parse_cluster(name) is None


@given(ip, ports)
def test_listener_name_round_trips(address: str, port: int) -> None:
    name = names.listener_name(address, port)
    assert names.parse_listener(name) == (address, port)


def test_listener_name_is_address_underscore_port() -> None:
    assert names.listener_name("10.0.0.5", names.OUTBOUND_PROXY_PORT) == "10.0.0.5_15001"


@pytest.mark.parametrize("name", ["10.0.0.5", "_15001", "10.0.0.5_", "10.0.0.5_x", "a_0"])
def test_parse_listener_refuses_foreign_names(name: str) -> None:
    assert names.parse_listener(name) is None


@given(fqdn, ports)
def test_virtual_host_name_round_trips(host: str, port: int) -> None:
    name = names.virtual_host_name(host, port)
    assert name == f"{host}:{port}"
    assert names.parse_virtual_host(name) == (host, port)


@given(ports)
def test_inbound_virtual_host_round_trips(port: int) -> None:
    name = names.inbound_virtual_host(port)
    assert name == f"inbound|http|{port}"
    assert names.parse_inbound_virtual_host(name) == port


@pytest.mark.parametrize("name", ["catalog", ":80", "catalog:", "catalog:http"])
def test_parse_virtual_host_refuses_foreign_names(name: str) -> None:
    assert names.parse_virtual_host(name) is None


@given(object_name, dns_label)
def test_node_id_round_trips(name: str, namespace: str) -> None:
    node = names.node_id(name, namespace)
    assert node == f"{name}.{namespace}"
    assert names.parse_node_id(node) == (name, namespace)


@given(object_name, dns_label, ipv4, st.sampled_from(names.ISTIO_NODE_TYPES))
def test_istio_node_id_round_trips(name: str, namespace: str, address: str, kind: str) -> None:
    node = names.istio_node_id(name, namespace, ip=address, node_type=kind)
    assert names.parse_node_id(node) == (name, namespace)


def test_istio_node_id_format() -> None:
    assert (
        names.istio_node_id("catalog-7d9f", "shop", ip="10.1.2.3")
        == "sidecar~10.1.2.3~catalog-7d9f.shop~shop.svc.cluster.local"
    )


def test_node_id_splits_on_the_last_dot() -> None:
    assert names.parse_node_id("vm.eu-west.1.shop") == ("vm.eu-west.1", "shop")


@pytest.mark.parametrize(
    "node",
    [
        "catalog",
        ".shop",
        "catalog.",
        "",
        "sidecar~10.0.0.1~catalog~shop.svc.cluster.local",  # no namespace in the id part
        "ingress~10.0.0.1~gw.shop~shop.svc.cluster.local",  # unknown node type
        "sidecar~10.0.0.1~catalog.shop",  # three parts
    ],
)
def test_parse_node_id_refuses_ids_naming_no_workload(node: str) -> None:
    assert names.parse_node_id(node) is None


# -- transparent mode --------------------------------------------------------------


@given(ports)
def test_port_route_round_trips(port: int) -> None:
    name = names.port_route(port)
    assert name == str(port)  # Istio names a port's outbound route by the number
    assert names.parse_port_route(name) == port


@pytest.mark.parametrize("name", ["http_proxy", "080", "0", "65536", "+80", "80a", ""])
def test_parse_port_route_refuses_foreign_names(name: str) -> None:
    assert names.parse_port_route(name) is None


@given(st.one_of(ip, st.just("0.0.0.0")), ports)
def test_outbound_chain_round_trips(address: str, port: int) -> None:
    name = names.outbound_chain(address, port)
    assert names.parse_outbound_chain(name) == (address, port)


def test_outbound_chains_are_named_as_istio_names_its_per_port_listeners() -> None:
    assert names.outbound_chain("0.0.0.0", 9080) == "0.0.0.0_9080"
    assert names.outbound_chain("10.96.0.40", 5432) == "10.96.0.40_5432"


@given(st.sampled_from(["inbound", "inbound-mtls", "inbound-plaintext"]), ports)
def test_inbound_chain_round_trips(kind: str, port: int) -> None:
    name = names.inbound_chain(kind, port)
    assert name == f"{kind}-{port}"
    assert names.parse_inbound_chain(name) == (kind, port)


@pytest.mark.parametrize(
    "name", ["inbound", "inbound-", "inbound-0", "outbound-80", "inboundx-80", "-80",
             "virtualInbound-catchall-tcp"])
def test_parse_inbound_chain_refuses_foreign_names(name: str) -> None:
    assert names.parse_inbound_chain(name) is None


@pytest.mark.parametrize("security", ["", "mtls", "plaintext"])
def test_inbound_catchall_chain_round_trips(security: str) -> None:
    name = names.inbound_catchall_chain(security)
    assert name.startswith(names.INBOUND_CATCHALL_CHAIN)
    assert names.parse_inbound_catchall_chain(name) == security


@pytest.mark.parametrize(
    "name", ["virtualInbound-catchall-tcp-", "virtualInbound-catchall-tcp-tls",
             "virtualInbound", "inbound-mtls-80"])
def test_parse_inbound_catchall_chain_refuses_foreign_names(name: str) -> None:
    assert names.parse_inbound_catchall_chain(name) is None


def test_transparent_names_are_istios() -> None:
    assert (names.VIRTUAL_OUTBOUND, names.VIRTUAL_INBOUND) == ("virtualOutbound",
                                                               "virtualInbound")
    assert (names.PASSTHROUGH_CLUSTER, names.INBOUND_PASSTHROUGH_CLUSTER,
            names.BLACKHOLE_CLUSTER) == ("PassthroughCluster", "InboundPassthroughCluster",
                                         "BlackHoleCluster")
    assert (names.OUTBOUND_PROXY_PORT, names.INBOUND_CAPTURE_PORT) == (15001, 15006)
