"""What runs beside a workload rather than in the control plane:

- `launcher` (with `credentials` and `envoyproc`): `legation proxy`, stock Envoy for
  one workload, drained and hot-restarted as Istio's agent does;
- `certfiles`: `legation grpc-agent`, a proxyless gRPC workload's certificate files.
"""
