"""The typed mesh model. Imports nothing of ours but itself; no k8s, yaml or protobuf."""

from legation.model.destination import DestinationRule, effective_policy
from legation.model.diagnostics import Diagnostic, Severity, SourceRef
from legation.model.gateway import Gateway, GatewayHost, GatewayServer, gateway_key
from legation.model.identity import (
    SpiffeId,
    SpiffeIdError,
    TrustBundle,
    WorkloadCertificate,
    validate_trust_domain,
)
from legation.model.mesh import (
    DEFAULT_DOMAIN,
    AppAddress,
    Endpoint,
    EndpointSlice,
    HealthStatus,
    InterceptionMode,
    Labels,
    Locality,
    MeshObject,
    Namespace,
    Node,
    ObjectKey,
    PolicyObject,
    Service,
    ServicePort,
    SliceEndpoint,
    SlicePort,
    Workload,
    WorkloadKind,
    duplicate_definition,
    labels_of,
    object_key,
    selector_matches,
)
from legation.model.protocol import Protocol
from legation.model.proxy import Proxy
from legation.model.security import (
    AuthorizationPolicy,
    MeshSecurity,
    MtlsMode,
    PeerAuthentication,
)
from legation.model.sidecar import EgressHost, Scope, Sidecar
from legation.model.snapshot import MeshSnapshot
from legation.model.traffic import VirtualService

__all__ = [
    "DEFAULT_DOMAIN",
    "AppAddress",
    "AuthorizationPolicy",
    "DestinationRule",
    "Diagnostic",
    "EgressHost",
    "Endpoint",
    "EndpointSlice",
    "Gateway",
    "GatewayHost",
    "GatewayServer",
    "HealthStatus",
    "InterceptionMode",
    "Labels",
    "Locality",
    "MeshObject",
    "MeshSecurity",
    "MeshSnapshot",
    "MtlsMode",
    "Namespace",
    "Node",
    "ObjectKey",
    "PeerAuthentication",
    "PolicyObject",
    "Protocol",
    "Proxy",
    "Scope",
    "Service",
    "ServicePort",
    "Severity",
    "Sidecar",
    "SliceEndpoint",
    "SlicePort",
    "SourceRef",
    "SpiffeId",
    "SpiffeIdError",
    "TrustBundle",
    "VirtualService",
    "Workload",
    "WorkloadCertificate",
    "WorkloadKind",
    "duplicate_definition",
    "effective_policy",
    "gateway_key",
    "labels_of",
    "object_key",
    "selector_matches",
    "validate_trust_domain",
]
