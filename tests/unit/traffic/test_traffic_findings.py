"""Every validation finding of VirtualService and DestinationRule: code, field, line, message.

One row per finding. Converter findings come from the object alone; the
cross-object ones from a store holding the small mesh of traffic_builders.
An ERROR means the object is not applied; a WARNING or INFO leaves it applied.
"""

from __future__ import annotations

import pytest

from legation.model import DestinationRule, Severity, VirtualService

from .traffic_builders import CATALOG_DR, Finding, Mesh, convert, dr, marked_line, vs

W, INFO = Severity.WARNING, Severity.INFO

ROUTE = "http:\n- route:\n  - destination: {host: catalog}\n"

VS_FINDINGS = [
    Finding(id="unknown-field", code="virtualservice.field-unknown", field="spec.http[0].retrys",
            message="has no field 'retrys'. Did you mean 'retries'?",
            yaml=vs("hosts: [catalog]\nhttp:\n- retrys: {attempts: 3}  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="unknown-spec-field", code="virtualservice.field-unknown", field="spec.host",
            message="Expected one of: exportTo, gateways, hosts, http, tcp, tls",
            yaml=vs("host: catalog  # <-\n" + ROUTE)),
    Finding(id="spec-not-mapping", code="virtualservice.spec-invalid", field="spec",
            message="expected a mapping",
            yaml="apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                 "metadata: {name: v}\nspec: [a]  # <-\n"),
    Finding(id="hosts-missing", code="virtualservice.hosts-missing", field="spec.hosts",
            message="this field is required",
            yaml="apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                 "metadata: {name: v, namespace: shop}\nspec:  # <-\n  http:\n"
                 "  - route: [{destination: {host: catalog}}]\n"),
    Finding(id="host-star", code="virtualservice.host-invalid", field="spec.hosts[0]",
            message="wildcard host '*'", yaml=vs("hosts:\n- '*'  # <-\n" + ROUTE)),
    Finding(id="host-bad-chars", code="virtualservice.host-invalid", field="spec.hosts[0]",
            message="expected a host name", yaml=vs("hosts:\n- catalog_v1  # <-\n" + ROUTE)),
    Finding(id="no-routes", code="virtualservice.routes-missing", field="spec",
            message="has no rules",
            yaml="apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                 "metadata: {name: v, namespace: shop}\nspec:  # <-\n  hosts: [catalog]\n"),
    Finding(id="duration-unit", code="virtualservice.duration-invalid",
            field="spec.http[0].timeout", message="'1x' is not a number followed by a unit",
            yaml=vs("hosts: [catalog]\nhttp:\n- timeout: 1x  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="duration-no-unit", code="virtualservice.duration-invalid",
            field="spec.http[0].timeout", message="'10' has no unit",
            yaml=vs("hosts: [catalog]\nhttp:\n- timeout: '10'  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="duration-number", code="virtualservice.duration-invalid",
            field="spec.http[0].timeout", message="write 10s for seconds",
            yaml=vs("hosts: [catalog]\nhttp:\n- timeout: 10  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="duration-sub-ms", code="virtualservice.duration-invalid",
            field="spec.http[0].retries.perTryTimeout", message="at least 1ms",
            yaml=vs("hosts: [catalog]\nhttp:\n- retries:\n    attempts: 2\n"
                    "    perTryTimeout: 500us  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="duration-precision", code="virtualservice.duration-invalid",
            field="spec.http[0].timeout", message="only whole milliseconds",
            yaml=vs("hosts: [catalog]\nhttp:\n- timeout: 1.5ms  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="regex-lookahead", code="virtualservice.regex-invalid",
            field="spec.http[0].match[0].uri.regex", message="RE2 does not support lookahead",
            yaml=vs("hosts: [catalog]\nhttp:\n- match:\n  - uri:\n"
                    "      regex: '^/(?=api)'  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="regex-backreference", code="virtualservice.regex-invalid",
            field="spec.http[0].match[0].headers.x-id.regex", message="backreferences",
            yaml=vs("hosts: [catalog]\nhttp:\n- match:\n  - headers:\n      x-id:\n"
                    "        regex: '(a)\\1'  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="regex-syntax", code="virtualservice.regex-invalid",
            field="spec.http[0].rewrite.uriRegexRewrite.match", message="missing )",
            yaml=vs("hosts: [catalog]\nhttp:\n- rewrite:\n    uriRegexRewrite:\n"
                    "      match: '^/(a'  # <-\n      rewrite: /b\n"
                    "  route: [{destination: {host: catalog}}]")),
    # issue 13: Envoy refuses these, and with them the whole shared route configuration
    Finding(id="regex-program-size", code="virtualservice.regex-invalid",
            field="spec.http[0].match[0].uri.regex", message="program size is 1004",
            yaml=vs("hosts: [catalog]\nhttp:\n- match:\n  - uri:\n"
                    "      regex: 'a{1000}'  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="query-regex-program-size", code="virtualservice.regex-invalid",
            field="spec.http[0].match[0].queryParams.id.regex", message="over Envoy's limit",
            yaml=vs("hosts: [catalog]\nhttp:\n- match:\n  - queryParams:\n      id:\n"
                    "        regex: '[0-9]{1,200}'  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="cors-regex-program-size", code="virtualservice.regex-invalid",
            field="spec.http[0].corsPolicy.allowOrigins[0].regex", message="over Envoy's limit",
            yaml=vs("hosts: [catalog]\nhttp:\n- corsPolicy:\n    allowOrigins:\n"
                    "    - regex: 'https://[a-z]{1,300}'  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="header-value-newline", code="virtualservice.header-value-invalid",
            field="spec.http[0].headers.request.set.x-team", message="holds a line break",
            yaml=vs("hosts: [catalog]\nhttp:\n- headers:\n    request:\n      set:\n"
                    "        x-team: |  # <-\n          blue\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="header-value-lone-percent", code="virtualservice.header-value-invalid",
            field="spec.http[0].headers.response.add.x-share", message="write %% for a percent",
            yaml=vs("hosts: [catalog]\nhttp:\n- headers:\n    response:\n      add:\n"
                    "        x-share: 50%  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="match-value-newline", code="virtualservice.match-invalid",
            field="spec.http[0].match[0].headers.x-team.exact", message="holds a line break",
            yaml=vs("hosts: [catalog]\nhttp:\n- match:\n  - headers:\n      x-team:\n"
                    "        exact: \"blue\\r\\n\"  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="weights-sum", code="virtualservice.weights-sum", field="spec.http[0].route",
            message="add up to 110 (90 + 20); expected them to add up to 100",
            yaml=vs("hosts: [catalog]\nhttp:\n- route:  # <-\n"
                    "  - {destination: {host: catalog, subset: v1}, weight: 90}\n"
                    "  - {destination: {host: catalog, subset: v2}, weight: 20}")),
    Finding(id="weight-range", code="virtualservice.weight-invalid",
            field="spec.http[0].route[0].weight", message="from 0 to 100",
            yaml=vs("hosts: [catalog]\nhttp:\n- route:\n  - destination: {host: catalog}\n"
                    "    weight: 150  # <-")),
    Finding(id="action-missing", code="virtualservice.action-missing", field="spec.http[0]",
            message="expected one of route, redirect or directResponse",
            yaml=vs("hosts: [catalog]\nhttp:\n- timeout: 1s  # <-")),
    Finding(id="action-conflict", code="virtualservice.action-conflict",
            field="spec.http[0].redirect", message="sets both route and redirect",
            yaml=vs("hosts: [catalog]\nhttp:\n- route: [{destination: {host: catalog}}]\n"
                    "  redirect: {uri: /x}  # <-")),
    Finding(id="rewrite-with-redirect", code="virtualservice.action-conflict",
            field="spec.http[0].rewrite", message="cannot be combined with redirect",
            yaml=vs("hosts: [catalog]\nhttp:\n- redirect: {uri: /x}\n  rewrite: {uri: /y}  # <-")),
    Finding(id="match-two-kinds", code="virtualservice.match-invalid",
            field="spec.http[0].match[0].uri", message="sets exact and prefix",
            yaml=vs("hosts: [catalog]\nhttp:\n- match:\n  - uri: {exact: /a, prefix: /b}  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="header-uppercase", code="virtualservice.header-name-invalid",
            field="spec.http[0].match[0].headers.X-User", message="a lowercase header name",
            yaml=vs("hosts: [catalog]\nhttp:\n- match:\n  - headers:\n"
                    "      X-User: {exact: a}  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="query-prefix", code="virtualservice.match-invalid",
            field="spec.http[0].match[0].queryParams.id.prefix",
            message="prefix is not supported for query parameters",
            yaml=vs("hosts: [catalog]\nhttp:\n- match:\n  - queryParams:\n"
                    "      id: {prefix: a}  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="retry-on", code="virtualservice.retry-on-invalid",
            field="spec.http[0].retries.retryOn", message="'5xxx' is not a retry condition",
            yaml=vs("hosts: [catalog]\nhttp:\n- retries:\n    attempts: 3\n"
                    "    retryOn: 5xxx,connect-failure  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="attempts-negative", code="virtualservice.attempts-invalid",
            field="spec.http[0].retries.attempts", message="from 0 to",
            yaml=vs("hosts: [catalog]\nhttp:\n- retries:\n    attempts: -1  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="redirect-code", code="virtualservice.redirect-code-invalid",
            field="spec.http[0].redirect.redirectCode", message="one of 301, 302, 303, 307, 308",
            yaml=vs("hosts: [catalog]\nhttp:\n- redirect:\n    uri: /x\n"
                    "    redirectCode: 305  # <-")),
    Finding(id="redirect-port-and-derive", code="virtualservice.redirect-invalid",
            field="spec.http[0].redirect.derivePort", message="sets both port and derivePort",
            yaml=vs("hosts: [catalog]\nhttp:\n- redirect:\n    port: 8080\n"
                    "    derivePort: FROM_REQUEST_PORT  # <-")),
    Finding(id="direct-status", code="virtualservice.status-invalid",
            field="spec.http[0].directResponse.status", message="from 200 to 599",
            yaml=vs("hosts: [catalog]\nhttp:\n- directResponse:\n    status: 700  # <-")),
    Finding(id="direct-bytes", code="virtualservice.body-invalid",
            field="spec.http[0].directResponse.body.bytes", message="base64-encoded bytes",
            yaml=vs("hosts: [catalog]\nhttp:\n- directResponse:\n    status: 200\n"
                    "    body:\n      bytes: '***'  # <-")),
    Finding(id="percentage-range", code="virtualservice.percentage-invalid",
            field="spec.http[0].fault.abort.percentage.value", message="from 0 to 100",
            yaml=vs("hosts: [catalog]\nhttp:\n- fault:\n    abort:\n      httpStatus: 503\n"
                    "      percentage:\n        value: 150  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="abort-kind", code="virtualservice.abort-invalid", field="spec.http[0].fault.abort",
            message="exactly one of httpStatus or grpcStatus",
            yaml=vs("hosts: [catalog]\nhttp:\n- fault:\n    abort:  # <-\n"
                    "      percentage: {value: 10}\n  route: [{destination: {host: catalog}}]")),
    Finding(id="abort-status", code="virtualservice.http-status-invalid",
            field="spec.http[0].fault.abort.httpStatus", message="from 200 to 599",
            yaml=vs("hosts: [catalog]\nhttp:\n- fault:\n    abort:\n      httpStatus: 99  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="grpc-status", code="virtualservice.grpc-status-invalid",
            field="spec.http[0].fault.abort.grpcStatus", message="one of OK, CANCELLED",
            yaml=vs("hosts: [catalog]\nhttp:\n- fault:\n    abort:\n"
                    "      grpcStatus: BROKEN  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="fault-empty", code="virtualservice.fault-invalid", field="spec.http[0].fault",
            message="the fault is empty",
            yaml=vs("hosts: [catalog]\nhttp:\n- fault: {}  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="delay-missing", code="virtualservice.fixed-delay-missing",
            field="spec.http[0].fault.delay.fixedDelay", message="this field is required",
            yaml=vs("hosts: [catalog]\nhttp:\n- fault:\n    delay:  # <-\n"
                    "      percentage: {value: 10}\n  route: [{destination: {host: catalog}}]")),
    Finding(id="mirror-and-mirrors", code="virtualservice.mirror-conflict",
            field="spec.http[0].mirrors", message="sets both mirror and mirrors",
            yaml=vs("hosts: [catalog]\nhttp:\n- mirror: {host: reviews}\n"
                    "  mirrors: [{destination: {host: reviews}}]  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="delegate", code="virtualservice.delegate-unsupported",
            field="spec.http[0].delegate", message="delegate VirtualServices are not supported",
            yaml=vs("hosts: [catalog]\nhttp:\n- delegate: {name: other}  # <-")),
    Finding(id="export-mixed", code="virtualservice.export-to-invalid", field="spec.exportTo",
            message="'*' already exports everywhere",
            yaml=vs("hosts: [catalog]\nexportTo: ['*', shop]  # <-\n" + ROUTE)),
    Finding(id="gateway-name", code="virtualservice.gateway-invalid", field="spec.gateways[0]",
            message="'mesh' or a gateway name",
            yaml=vs("hosts: [catalog]\ngateways:\n- 'bad gateway!'  # <-\n" + ROUTE)),
    Finding(id="subset-name", code="virtualservice.subset-invalid",
            field="spec.http[0].route[0].destination.subset", message="a DNS-1123 label",
            yaml=vs("hosts: [catalog]\nhttp:\n- route:\n  - destination:\n      host: catalog\n"
                    "      subset: V_1  # <-")),
    Finding(id="destination-wildcard", code="virtualservice.host-invalid",
            field="spec.http[0].route[0].destination.host", message="no wildcard here",
            yaml=vs("hosts: [catalog]\nhttp:\n- route:\n  - destination:\n"
                    "      host: '*.shop'  # <-")),
    Finding(id="destination-missing", code="virtualservice.destination-missing",
            field="spec.http[0].route[0].destination", message="this field is required",
            yaml=vs("hosts: [catalog]\nhttp:\n- route:\n  - weight: 100  # <-")),
    Finding(id="tcp-weights", code="virtualservice.weights-sum", field="spec.tcp[0].route",
            message="add up to 50",
            yaml=vs("hosts: [catalog]\ntcp:\n- route:  # <-\n"
                    "  - {destination: {host: catalog, subset: v1}, weight: 25}\n"
                    "  - {destination: {host: catalog, subset: v2}, weight: 25}")),
    Finding(id="rule-after-catch-all", code="virtualservice.rule-unreachable",
            field="spec.http[1]", message="spec.http[0] before it matches every request",
            severity=W,
            yaml=vs("hosts: [catalog]\nhttp:\n- route: [{destination: {host: catalog}}]\n"
                    "- match:  # <-\n  - uri: {prefix: /a}\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="duplicate-match", code="virtualservice.rule-unreachable",
            field="spec.http[1].match[0]", message="matches exactly the same requests",
            severity=W,
            yaml=vs("hosts: [catalog]\nhttp:\n- match: [{uri: {prefix: /a}}]\n"
                    "  route: [{destination: {host: catalog}}]\n- match:\n"
                    "  - uri: {prefix: /a}  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="mirror-percent-deprecated", code="virtualservice.field-deprecated",
            field="spec.http[0].mirrorPercent", message="use mirrorPercentage", severity=W,
            yaml=vs("hosts: [catalog]\nhttp:\n- mirror: {host: reviews}\n"
                    "  mirrorPercent: 5  # <-\n  route: [{destination: {host: catalog}}]")),
    Finding(id="tls-route-without-match", code="virtualservice.match-missing",
            field="spec.tls[0].match", message="at least one match with sniHosts",
            yaml=vs("hosts: [catalog]\ntls:\n- route: [{destination: {host: catalog}}]  # <-")),
    Finding(id="pseudo-header", code="virtualservice.header-name-ignored",
            field="spec.http[0].headers.request.set[:path]", message="pseudo-header", severity=W,
            yaml=vs("hosts: [catalog]\nhttp:\n- headers:\n    request:\n      set:\n"
                    "        ':path': /x  # <-\n  route: [{destination: {host: catalog}}]")),
]

DR_FINDINGS = [
    Finding(id="unknown-field", code="destinationrule.field-unknown",
            field="spec.trafficPolicy.loadBalance", message="Did you mean 'loadBalancer'?",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalance: {simple: RANDOM}  # <-")),
    Finding(id="host-missing", code="destinationrule.host-missing", field="spec.host",
            message="this field is required",
            yaml="apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                 "metadata: {name: d, namespace: shop}\nspec:  # <-\n"
                 "  subsets: [{name: v1, labels: {version: v1}}]\n"),
    Finding(id="subset-duplicate", code="destinationrule.subset-duplicate",
            field="spec.subsets[1].name", message="already defined at spec.subsets[0]",
            yaml=dr("host: catalog\nsubsets:\n- {name: v1, labels: {version: v1}}\n"
                    "- name: v1  # <-\n  labels: {version: v2}")),
    Finding(id="subset-name", code="destinationrule.subset-name-invalid",
            field="spec.subsets[0].name", message="a DNS-1123 label",
            yaml=dr("host: catalog\nsubsets:\n- name: Version_1  # <-")),
    Finding(id="simple-and-hash", code="destinationrule.load-balancer-invalid",
            field="spec.trafficPolicy.loadBalancer", message="sets both simple and consistentHash",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:  # <-\n    simple: RANDOM\n"
                    "    consistentHash: {useSourceIp: true}")),
    Finding(id="simple-unknown", code="destinationrule.simple-invalid",
            field="spec.trafficPolicy.loadBalancer.simple", message="one of UNSPECIFIED",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n"
                    "    simple: FASTEST  # <-")),
    Finding(id="two-hash-keys", code="destinationrule.hash-key-invalid",
            field="spec.trafficPolicy.loadBalancer.consistentHash",
            message="exactly one hash key",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:  # <-\n"
                    "      useSourceIp: true\n      httpHeaderName: x-user")),
    Finding(id="ring-and-maglev", code="destinationrule.hash-algorithm-invalid",
            field="spec.trafficPolicy.loadBalancer.consistentHash",
            message="sets both ringHash and maglev",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:  # <-\n"
                    "      useSourceIp: true\n      ringHash: {minimumRingSize: 10}\n"
                    "      maglev: {tableSize: 65537}")),
    Finding(id="maglev-not-prime", code="destinationrule.table-size-invalid",
            field="spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            message="a prime number below 5000011",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n"
                    "      useSourceIp: true\n      maglev:\n        tableSize: 1000  # <-")),
    Finding(id="distribute-sum", code="destinationrule.distribute-invalid",
            field="spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
            message="the weights add up to 90",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n"
                    "      distribute:\n      - from: eu/a/*\n        to:  # <-\n"
                    "          'eu/a/*': 80\n          'eu/b/*': 10")),
    Finding(id="distribute-and-failover", code="destinationrule.locality-invalid",
            field="spec.trafficPolicy.loadBalancer.localityLbSetting",
            message="sets distribute together with failover",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n"
                    "    localityLbSetting:  # <-\n"
                    "      distribute: [{from: 'eu/*', to: {'eu/*': 100}}]\n"
                    "      failover: [{from: eu, to: us}]")),
    Finding(id="failover-same", code="destinationrule.failover-invalid",
            field="spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
            message="fails over from 'eu' to itself",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n"
                    "      failover:\n      - {from: eu, to: eu}  # <-")),
    Finding(id="failover-zone", code="destinationrule.failover-invalid",
            field="spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to",
            message="failover is between regions",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n"
                    "      failover:\n      - from: eu\n        to: us/zone-a  # <-")),
    Finding(id="locality-pattern", code="destinationrule.locality-invalid",
            field="spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from",
            message="'*' only at the end",
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n"
                    "      distribute:\n      - from: '*/zone-a'  # <-\n"
                    "        to: {'eu/*': 100}")),
    Finding(id="istio-mutual-files", code="destinationrule.tls-invalid",
            field="spec.trafficPolicy.tls", message="ISTIO_MUTUAL uses the mesh's own certificates",
            yaml=dr("host: catalog\ntrafficPolicy:\n  tls:  # <-\n    mode: ISTIO_MUTUAL\n"
                    "    caCertificates: /etc/ca.pem")),
    Finding(id="mutual-no-key", code="destinationrule.tls-missing",
            field="spec.trafficPolicy.tls.privateKey", message="required for MUTUAL",
            yaml=dr("host: catalog\ntrafficPolicy:\n  tls:  # <-\n    mode: MUTUAL\n"
                    "    clientCertificate: /etc/cert.pem")),
    Finding(id="tls-mode", code="destinationrule.mode-invalid", field="spec.trafficPolicy.tls.mode",
            message="one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL",
            yaml=dr("host: catalog\ntrafficPolicy:\n  tls:\n    mode: STRICT  # <-")),
    Finding(id="max-ejection", code="destinationrule.max-ejection-percent-invalid",
            field="spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            message="from 0 to 100",
            yaml=dr("host: catalog\ntrafficPolicy:\n  outlierDetection:\n"
                    "    maxEjectionPercent: 150  # <-")),
    Finding(id="outlier-interval", code="destinationrule.duration-invalid",
            field="spec.trafficPolicy.outlierDetection.interval", message="it must be at least 1ms",
            yaml=dr("host: catalog\ntrafficPolicy:\n  outlierDetection:\n"
                    "    interval: 0s  # <-")),
    Finding(id="max-connections", code="destinationrule.max-connections-invalid",
            field="spec.trafficPolicy.connectionPool.tcp.maxConnections",
            message="from 0 to 2147483647",
            yaml=dr("host: catalog\ntrafficPolicy:\n  connectionPool:\n    tcp:\n"
                    "      maxConnections: -1  # <-")),
    Finding(id="h2-upgrade", code="destinationrule.h2-upgrade-policy-invalid",
            field="spec.trafficPolicy.connectionPool.http.h2UpgradePolicy",
            message="one of DEFAULT, DO_NOT_UPGRADE, UPGRADE",
            yaml=dr("host: catalog\ntrafficPolicy:\n  connectionPool:\n    http:\n"
                    "      h2UpgradePolicy: ALWAYS  # <-")),
    Finding(id="port-level-duplicate", code="destinationrule.port-duplicate",
            field="spec.trafficPolicy.portLevelSettings[1].port",
            message="already has settings at spec.trafficPolicy.portLevelSettings[0]",
            yaml=dr("host: catalog\ntrafficPolicy:\n  portLevelSettings:\n"
                    "  - {port: {number: 9080}, loadBalancer: {simple: RANDOM}}\n"
                    "  - port: {number: 9080}  # <-\n    loadBalancer: {simple: ROUND_ROBIN}")),
    Finding(id="port-level-missing", code="destinationrule.port-missing",
            field="spec.trafficPolicy.portLevelSettings[0].port", message="this field is required",
            yaml=dr("host: catalog\ntrafficPolicy:\n  portLevelSettings:\n"
                    "  - loadBalancer: {simple: RANDOM}  # <-")),
    Finding(id="passthrough", code="destinationrule.field-unsupported",
            field="spec.trafficPolicy.loadBalancer.simple", message="LEAST_REQUEST is used",
            severity=W,
            yaml=dr("host: catalog\ntrafficPolicy:\n  loadBalancer:\n"
                    "    simple: PASSTHROUGH  # <-")),
    Finding(id="tunnel", code="destinationrule.field-unsupported",
            field="spec.trafficPolicy.tunnel", message="is not supported by Legation", severity=W,
            yaml=dr("host: catalog\ntrafficPolicy:\n  tunnel:  # <-\n"
                    "    targetHost: x\n    targetPort: 1")),
    Finding(id="workload-selector", code="destinationrule.workload-selector-unsupported",
            field="spec.workloadSelector", message="this rule is not applied", severity=W,
            yaml=dr("host: catalog\nworkloadSelector:  # <-\n  matchLabels: {app: client}")),
    Finding(id="credential-name", code="destinationrule.field-unsupported",
            field="spec.trafficPolicy.tls.credentialName", message="give file paths instead",
            severity=W,
            yaml=dr("host: catalog\ntrafficPolicy:\n  tls:\n    mode: SIMPLE\n"
                    "    credentialName: my-secret  # <-")),
    Finding(id="export-to", code="destinationrule.export-to-ignored", field="spec.exportTo",
            message="applies to every client", severity=INFO,
            yaml=dr("host: catalog\nexportTo: ['.']  # <-")),
]


CONVERTER_IDS = [f"vs-{c.id}" for c in VS_FINDINGS] + [f"dr-{c.id}" for c in DR_FINDINGS]


@pytest.mark.parametrize("case", VS_FINDINGS + DR_FINDINGS, ids=CONVERTER_IDS)
def test_converter_finding(case: Finding) -> None:
    result = convert(case.yaml)
    found = [d for d in result.diagnostics if d.code == case.code]
    assert found, [d.format() for d in result.diagnostics]
    d = found[0]
    assert (d.field, d.line, d.severity) == (case.field, marked_line(case.yaml), case.severity)
    assert case.message in d.message
    assert d.ref.file and d.format().startswith(f"{d.ref.file}:{d.line}: {case.severity}")
    applied = [o for o in result.objects if isinstance(o, VirtualService | DestinationRule)]
    if case.severity is Severity.ERROR:
        assert applied == [] and result.failed_keys
    else:
        assert len(applied) == 1


CROSS = [
    Finding(id="subset-unknown", code="virtualservice.subset-unknown",
            field="spec.http[0].route[0].destination.subset",
            message="subset 'v3' is not defined: DestinationRule shop/catalog for "
            "catalog.shop.svc.cluster.local defines 'v1', 'v2'",
            yaml=vs("hosts: [catalog]\nhttp:\n- route:\n  - destination:\n      host: catalog\n"
                    "      subset: v3  # <-")),
    Finding(id="host-unknown", code="virtualservice.host-unknown",
            field="spec.http[0].route[0].destination.host",
            message="'catalogue' (catalogue.shop.svc.cluster.local) is no Service",
            yaml=vs("hosts: [catalog]\nhttp:\n- route:\n  - destination:\n"
                    "      host: catalogue  # <-")),
    Finding(id="mirror-host-unknown", code="virtualservice.host-unknown",
            field="spec.http[0].mirror.host", message="is no Service",
            yaml=vs("hosts: [catalog]\nhttp:\n- mirror:\n    host: shadow  # <-\n"
                    "  route: [{destination: {host: catalog}}]")),
    Finding(id="port-unknown", code="virtualservice.port-unknown",
            field="spec.http[0].route[0].destination.port.number",
            message="Service shop/reviews has no port 9999; expected one of its ports (9080, 9090)",
            yaml=vs("hosts: [reviews]\nhttp:\n- route:\n  - destination:\n      host: reviews\n"
                    "      port:\n        number: 9999  # <-", name="reviews")),
    Finding(id="host-not-fqdn", code="virtualservice.host-not-fqdn", field="spec.hosts[0]",
            message="'catalog.shop' is read as catalog.shop.svc.cluster.local", severity=W,
            yaml=vs("hosts:\n- catalog.shop  # <-\n" + ROUTE)),
    Finding(id="dr-host-unknown", code="destinationrule.host-unknown", field="spec.host",
            message="no Service of the mesh, so this rule has no effect", severity=W,
            yaml=dr("host: ghost  # <-", name="ghost")),
    Finding(id="dr-subset-empty", code="destinationrule.subset-empty",
            field="spec.subsets[0].labels", message="selects no endpoint", severity=W,
            yaml=dr("host: catalog\nsubsets:\n- name: v9\n  labels: {version: v9}  # <-",
                    name="extra")),
    Finding(id="dr-port-unknown", code="destinationrule.port-unknown",
            field="spec.trafficPolicy.portLevelSettings[0].port.number",
            message="no port 8080 on the host", severity=W,
            yaml=dr("host: catalog\ntrafficPolicy:\n  portLevelSettings:\n  - port:\n"
                    "      number: 8080  # <-\n    loadBalancer: {simple: RANDOM}", name="extra")),
    Finding(id="dr-merged", code="destinationrule.merged", field="spec.subsets[0].name",
            message="subset 'v1' is already defined by another DestinationRule", severity=W,
            yaml=dr("host: catalog.shop.svc.cluster.local\nsubsets:\n- name: v1  # <-\n"
                    "  labels: {version: v2}", name="extra")),
    Finding(id="dr-shadowed", code="destinationrule.shadowed", field="spec.host",
            message="DestinationRule shop/catalog for it takes precedence", severity=W,
            yaml="apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                 "metadata: {name: mine, namespace: other}\nspec:\n"
                 "  host: catalog.shop.svc.cluster.local  # <-\n"),
]


@pytest.mark.parametrize("case", CROSS, ids=[c.id for c in CROSS])
def test_cross_object_finding(case: Finding) -> None:
    mesh = Mesh(dr=CATALOG_DR, case=case.yaml)
    found = mesh.findings(case.code)
    assert found, [d.format() for d in mesh.snapshot().diagnostics]
    d = found[0]
    assert (d.ref.file, d.field, d.line, d.severity) == (
        "case.yaml", case.field, marked_line(case.yaml), case.severity)
    assert case.message in d.message
    snap = mesh.snapshot()
    in_force = [(o.ref.kind, o.name) for o in (*snap.virtual_services, *snap.destination_rules)
                if o.ref.file == "case.yaml"]
    if case.severity is Severity.ERROR:
        assert in_force == [] and "not applied until this is fixed" in d.message
    else:
        assert len(in_force) == 1


def test_host_conflict_is_reported_on_the_newcomer() -> None:
    first = vs("hosts: [catalog]\n" + ROUTE, name="first")
    second = vs("hosts:\n- catalog.shop.svc.cluster.local  # <-\n" + ROUTE, name="a-second")
    mesh = Mesh(first=first)
    mesh.snapshot()  # `first` is now in force
    mesh.load(second=second)
    (d,) = mesh.findings("virtualservice.host-conflict")
    assert (d.ref.name, d.field, d.line) == ("a-second", "spec.hosts[0]", marked_line(second))
    assert "already routed by VirtualService shop/first" in d.message
    assert [v.name for v in mesh.snapshot().virtual_services] == ["first"]
