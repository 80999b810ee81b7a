"""What runs beside a workload rather than in the control plane: `certfiles` keeps a
proxyless gRPC workload's certificate files current (`legation grpc-agent`)."""
