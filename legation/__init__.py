"""Legation: an Envoy xDS management server.

Data flows one way (see DESIGN.md):
sources -> MeshStore -> translators -> SnapshotCache -> xds streams -> Envoy.
Nothing in this package does work at import time.
"""

__version__ = "0.1.0"
