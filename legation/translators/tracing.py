"""Tracing: a `TracingSetup` (model/telemetry.py) -> an HTTP connection manager's
`tracing` and the collector's cluster.

OpenTelemetry providers export spans with Envoy's `envoy.tracers.opentelemetry`
over OTLP/gRPC to the cluster ``tracing|<provider>`` (HTTP/2, the collector's
`service`:`port`); Zipkin providers with `envoy.tracers.zipkin` (JSON v2 over
HTTP to ``/api/v2/spans``). Envoy samples `random_sampling` percent of the
requests that arrive without a sampling decision and propagates W3C
`traceparent` (OpenTelemetry) or B3 (Zipkin) headers, so the spans of one
request through several proxies share its trace id. Custom tags map to Envoy's
literal / request header / environment tags.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import grpc_service_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.type.tracing.v3 import custom_tag_pb2
from envoy.type.v3 import percent_pb2

from legation.model.telemetry import TracingProvider, TracingSetup
from legation.translators.common import host_cluster

OTEL_TRACER = "envoy.tracers.opentelemetry"
ZIPKIN_TRACER = "envoy.tracers.zipkin"
ZIPKIN_PATH = "/api/v2/spans"


def cluster_name(provider: TracingProvider) -> str:
    return f"tracing|{provider.name}"


def hcm_tracing(setup: TracingSetup, service: str
                ) -> http_connection_manager_pb2.HttpConnectionManager.Tracing:
    """`service`: the name spans carry (``<workload>.<namespace>``)."""
    provider = setup.provider
    if provider.kind == "opentelemetry":
        config = opentelemetry_pb2.OpenTelemetryConfig(
            grpc_service=grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=cluster_name(provider))),
            service_name=service)
        http = http_tracer_pb2.Tracing.Http(name=OTEL_TRACER)
    else:
        config = zipkin_pb2.ZipkinConfig(
            collector_cluster=cluster_name(provider), collector_endpoint=ZIPKIN_PATH,
            collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
            trace_id_128bit=True)
        http = http_tracer_pb2.Tracing.Http(name=ZIPKIN_TRACER)
    http.typed_config.Pack(config)
    tracing = http_connection_manager_pb2.HttpConnectionManager.Tracing(
        provider=http, random_sampling=percent_pb2.Percent(value=setup.sampling))
    for tag in setup.custom_tags:
        out = tracing.custom_tags.add(tag=tag.name)
        if tag.kind == "literal":
            out.literal.value = tag.value
        elif tag.kind == "header":
            out.request_header.CopyFrom(custom_tag_pb2.CustomTag.Header(
                name=tag.value, default_value=tag.default))
        else:
            out.environment.CopyFrom(custom_tag_pb2.CustomTag.Environment(
                name=tag.value, default_value=tag.default))
    return tracing


def collector_cluster(provider: TracingProvider) -> cluster_pb2.Cluster:
    """The collector, by IP or by name (resolved by Envoy); HTTP/2 for OTLP/gRPC."""
    return host_cluster(cluster_name(provider), provider.service, provider.port,
                        grpc=provider.kind == "opentelemetry")
