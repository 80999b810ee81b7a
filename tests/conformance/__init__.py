"""xDS protocol conformance: a real grpc.aio channel against a real XdsServer."""
