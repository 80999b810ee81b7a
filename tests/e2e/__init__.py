"""End-to-end tests: real Envoy processes on loopback addresses (see harness.py)."""
