"""Legation: an Envoy xDS management server.

Data flows one way (see DESIGN.md):

    sources -> mesh (store, last-good, pipeline) -> translators -> cache -> xds -> Envoy
    security (CA, issuance, rotation) and kube (API-server side effects) beside them

A module's folder says what it may import. The table below is the rule, read
and enforced by tests/unit/test_layers.py (a new upward or sideways import, an
import cycle, or a new loose module at the top fails it):

    folder        may import (besides its own folder)
    model         -
    translators   model
    cache         -
    security      model translators cache
    mesh          model translators cache metrics
    sources       model mesh
    kube          model security
    xds           model translators cache security kube metrics
    admin         model cache security mesh xds metrics
    agent         model translators cache security bootstrap
    demo          anything
    app           anything (the composition root: App, and the wiring of security,
                  in-cluster credentials and leader-only duties)

`agent` runs beside a workload, not in the control plane (`legation grpc-agent`).
Entry points, the only modules at the top: cli, settings, logs, metrics,
bootstrap (settings, logs, metrics and bootstrap import nothing of ours).
Nothing in this package does work at import time.
"""

__version__ = "0.1.0"
