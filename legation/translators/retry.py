"""Route retry policies: Istio's default, and a VirtualService's `retries` converted.

Both follow istio/istio pilot/pkg/networking/core/route/retry/retry.go:
the default (DefaultPolicy) applies to every route that sets no `retries`;
`ConvertPolicy` starts from it and overrides what the VirtualService sets.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from google.protobuf import wrappers_pb2

from legation.model.traffic import Retry
from legation.translators.common import pack
from legation.translators.trafficpolicy import millis

RetryPolicy = route_components_pb2.RetryPolicy


def _previous_hosts() -> route_components_pb2.RetryPolicy.RetryHostPredicate:
    return RetryPolicy.RetryHostPredicate(
        name="envoy.retry_host_predicates.previous_hosts",
        typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
    )


def default_retry_policy() -> route_components_pb2.RetryPolicy:
    """Istio's default retry policy (istio/istio
    pilot/pkg/networking/core/route/retry/retry.go, DefaultPolicy): 2 retries on
    connection failures, refused streams, gRPC unavailable/cancelled and 503,
    preferring hosts not tried yet."""
    return RetryPolicy(
        retry_on="connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        num_retries=wrappers_pb2.UInt32Value(value=2),
        retriable_status_codes=[503],
        retry_host_predicate=[_previous_hosts()],
        host_selection_retry_max_attempts=5,
    )


def retry_policy(
    retry: Retry | None, *, consistent_hash: bool = False
) -> route_components_pb2.RetryPolicy | None:
    """A rule's retry policy: the default when unset, None when `attempts` is 0.

    With consistent hashing the previous-hosts predicate is dropped so that
    retries stay on the hashed host (Istio's DefaultConsistentHashPolicy).
    Numbers in `retryOn` are retriable status codes; `retriable-status-codes`
    is added for them when missing, as Istio does.
    """
    out = default_retry_policy()
    if consistent_hash:
        del out.retry_host_predicate[:]
    if retry is None:
        return out
    if retry.attempts <= 0:
        return None
    out.num_retries.value = retry.attempts
    if retry.retry_on or retry.retriable_status_codes:
        conditions = list(retry.retry_on)
        if retry.retriable_status_codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        out.retry_on = ",".join(conditions)
        del out.retriable_status_codes[:]
        out.retriable_status_codes.extend(retry.retriable_status_codes)
    if retry.per_try_timeout_ms:
        out.per_try_timeout.CopyFrom(millis(retry.per_try_timeout_ms))
    if retry.retry_ignore_previous_hosts is not None:
        del out.retry_host_predicate[:]
        if retry.retry_ignore_previous_hosts:
            out.retry_host_predicate.append(_previous_hosts())
    if retry.retry_remote_localities:
        out.retry_priority.name = "envoy.retry_priorities.previous_priorities"
        out.retry_priority.typed_config.CopyFrom(
            pack(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2))
        )
    if retry.backoff_ms:
        out.retry_back_off.base_interval.CopyFrom(millis(retry.backoff_ms))
    return out
